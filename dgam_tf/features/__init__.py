"""From video to I3D features: decoding, TV-L1 flow, the Keras I3D and its weights.

Imports nothing from `dgam_tf.training`; import the submodules directly
(`dgam_tf.features.i3d`, `dgam_tf.features.weights`, ...).
"""
