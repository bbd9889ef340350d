"""Shared model plumbing: options, device/dtype choice, loading by hub id or path, the model catalogue."""

# model_type of ``captionkit train projector --projector residual`` folders (captionkit.models.residual_llava),
# here so that checking for it imports no torch.
RESIDUAL_LLAVA_TYPE = "captionkit_residual_llava"
