"""Using a trained model: load it for inference, evaluate, predict, embed, look inside (feature maps,
Grad-CAM) and export."""
