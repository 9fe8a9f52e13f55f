"""`export/` is a folder of entry points run from the repository root: not installed as a
top-level package, and holding no logic (each runs its `stabn_tf.export` command)."""

import ast
import configparser
import pathlib

import setuptools

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_installing_puts_no_top_level_export_package_into_site_packages():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    include = config["options.packages.find"]["include"].split()
    packages = setuptools.find_packages(str(ROOT), include=include)
    assert "stabn_tf.deploy" in packages
    assert not [p for p in packages if p.split(".")[0] != "stabn_tf"], packages


def test_export_init_is_a_docstring_and_each_cli_only_runs_its_stabn_tf_command():
    init = ast.parse((ROOT / "export" / "__init__.py").read_text())
    assert len(init.body) == 1 and isinstance(init.body[0].value, ast.Constant)
    for name in ("client.py", "openvino.py", "saved_model.py", "tflite.py"):
        tree = ast.parse((ROOT / "export" / name).read_text())
        imported, main = tree.body
        assert isinstance(imported, ast.ImportFrom), name
        assert imported.module == f"stabn_tf.export.{name[:-3]}", name
        assert isinstance(main, ast.If) and len(main.body) == 1, name
