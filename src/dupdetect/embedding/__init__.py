"""What an image becomes: decoded pixels (``decode``), the descriptor (``model``, batched by
``worker``, fed by ``pipeline``'s decode processes), the perceptual hash (``perceptual``) and
local keypoints (``geometry``)."""
