"""torchvision's published metadata for the official VGG weights: the independent reference for the tests."""

import torchvision

TORCHVISION_WEIGHTS = {
    "vgg11": torchvision.models.VGG11_Weights.IMAGENET1K_V1,
    "vgg11_bn": torchvision.models.VGG11_BN_Weights.IMAGENET1K_V1,
    "vgg13": torchvision.models.VGG13_Weights.IMAGENET1K_V1,
    "vgg13_bn": torchvision.models.VGG13_BN_Weights.IMAGENET1K_V1,
    "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    "vgg16_bn": torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1,
    "vgg19": torchvision.models.VGG19_Weights.IMAGENET1K_V1,
    "vgg19_bn": torchvision.models.VGG19_BN_Weights.IMAGENET1K_V1,
}
