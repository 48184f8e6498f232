"""Which layers a new expert adapts (PEFT ``target_modules`` suffixes).

The UNet list covers attention projections, feed-forward layers and the resnet convolutions;
the VAE list adds the skip convolutions of :class:`~uir.models.SkipAutoencoderKL`, as
img2img-turbo does. Default ranks follow UIR-LoRA sec. 4.2: 8 for the UNet, 4 for the VAE.
"""

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                "conv1", "conv2", "conv_shortcut", "conv", "conv_out")
VAE_TARGETS = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_q", "to_k", "to_v", "to_out.0",
               "skip_convs.0", "skip_convs.1", "skip_convs.2", "skip_convs.3")
UNET_RANK = 8
VAE_RANK = 4
