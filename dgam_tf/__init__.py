"""dgam-tf: DGAM weakly-supervised action localization in TensorFlow."""
