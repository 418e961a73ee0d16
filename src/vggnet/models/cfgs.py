"""The VGG family as data: config lists, the smallest input, the heads. Free of torch, so that the registry's
names (and `vggnet --help`, which lists them) need no torch import.

Each variant is a line of data in `CFGS`: a number is a 3x3 convolution (padding 1) with that many output
channels, followed by ReLU; `"M"` is a 2x2 max-pool with stride 2. `vgg.make_features` turns a list into layers.
"""

CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

# Five 2x2 max-pools halve the input five times; below 32 pixels the last one would produce an empty map.
MIN_INPUT_SIZE = 32

HEADS = ("classic", "compact")
