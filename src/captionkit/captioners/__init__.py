"""Captioner backends, one per file, behind the :class:`~captionkit.captioners.base.Captioner` protocol.

``load_captioner("florence-2-base")``, ``load_captioner("Salesforce/blip-image-captioning-base")`` or
``load_captioner("/models/my-git")``: names come from the catalogue, ids and folders are matched to a
backend by their config's ``model_type``.
"""

from captionkit.captioners.base import Captioner, available_backends, load_captioner, register_captioner

__all__ = ["Captioner", "available_backends", "load_captioner", "register_captioner"]
