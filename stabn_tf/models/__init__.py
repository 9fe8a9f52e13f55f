"""The networks: the 3D ResNet backbone, ST-ABN and its baseline, ImageNet inflation,
size/compute counting, and the same model computing in bf16 (`policy`)."""
