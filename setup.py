"""dgam-tf: DGAM (CVPR 2020) weakly-supervised action localization in TensorFlow."""
import setuptools

setuptools.setup(
    name="dgam-tf",
    version="0.1.0",
    description=("Weakly-supervised temporal action localization by generative "
                 "attention modeling (DGAM, CVPR 2020) in TensorFlow/Keras."),
    packages=setuptools.find_packages(include=["dgam_tf", "dgam_tf.*"]),
    # The standard ground truth (dgam_tf.data.annotations).
    package_data={"dgam_tf.data.annotations": ["*.json"]},
    entry_points={"console_scripts": ["dgam-tf = dgam_tf.main:console_script"]},
    python_requires=">=3.10",
    install_requires=[
        # Pinned to the minor versions tested together; TF, tf-keras and
        # tensorflow-serving-api move in lockstep.
        "tensorflow~=2.21.0",
        # TFP needs tf-keras to import (its `tf` extra), although the models
        # themselves are Keras 3.
        "tensorflow-probability[tf]~=0.25.0",
        "tf-keras~=2.21.0",
        "keras>=3",
        "numpy",
        "absl-py",
        # tf.summary needs it; TensorFlow no longer installs it.
        "tensorboard",
        # Plots of attention / T-CAM / detections (--mode=visualize).
        "matplotlib",
        # Request/response protos for TF Serving clients and warm-up records.
        "tensorflow-serving-api~=2.21.0",
    ],
    extras_require={
        # scipy is the independent reference for Gaussian smoothing in tests;
        # hypothesis drives the corrupted-record property tests.
        "test": ["pytest", "scipy", "hypothesis"],
        # TensorBoard's Profile tab for --profile_steps traces (docs/performance.md).
        "profile": ["tensorboard-plugin-profile"],
        # --mode=extract: decoding (OpenCV's bundled LGPL FFmpeg) and TV-L1
        # flow (contrib's optflow). Never beside opencv-python[-headless]:
        # both install the module cv2.
        "video": ["opencv-contrib-python-headless>=4.11"],
        # The extraction on a Beam runner (python -m dgam_tf.features.beam).
        # It installs beside tensorflow 2.21 in one environment (pip picks
        # protobuf 6.x, which TF accepts); docs/features.md has the check.
        "beam": ["apache-beam>=2.60"],
    },
)
