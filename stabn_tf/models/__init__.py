"""The networks: the 3D ResNet backbone, ST-ABN and its baseline, ImageNet inflation and
size/compute counting."""
