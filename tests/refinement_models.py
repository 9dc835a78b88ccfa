"""Two tiny family members for the refinement tests: one on a 32-band log-mel frontend (one
convolution, the task's head), one on raw 10 ms frames without a frontend. Registered
in-process, or, run as a script, in front of the `lean` CLI (so a subprocess that a test kills
-9 trains them too)."""

from __future__ import annotations

import sys

TINY_MODEL = "refine_tiny"
RAW_MODEL = "refine_raw"


def register_test_models() -> None:
    """Registers `refine_tiny` and `refine_raw` once."""
    import keras

    from lean.config import InputSpec
    from lean.frontends import Spectrogram, SpectrogramConfig
    from lean.models.common import classifier_head, waveform_input
    from lean.models.registry import model_names, register

    if TINY_MODEL in model_names():
        return

    @register(TINY_MODEL, description="test-only: 32-band log-mel, one conv, the task's head",
              input=InputSpec(16000, 1, 1.0), task="single_label")
    def build_tiny(config, load_pretrained=True):
        waveform = waveform_input(config)
        frontend = SpectrogramConfig.log_mel(bands=32, fft_length=1024, high_hz=8000.0)
        # bands has shape [B, 40, 32]: 50 ms frames every 25 ms.
        bands = Spectrogram(frontend, config.input.sample_rate, name="log_mel")(waveform)
        x = keras.layers.Reshape((40, 32, 1), name="image")(bands)
        # log(mel + 1e-6) of the test clips lies in about [-9, 4]: centre and scale it.
        x = keras.layers.Rescaling(1 / 3, offset=2.0, name="bands_scale")(x)
        x = keras.layers.Conv2D(8, 5, strides=2, activation="relu", name="conv")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.Model(waveform, classifier_head(x, config), name=config.name)

    @register(RAW_MODEL, description="test-only: raw 10 ms frames, no frontend",
              input=InputSpec(16000, 1, 1.0), task="single_label")
    def build_raw(config, load_pretrained=True):
        waveform = waveform_input(config)
        frames = keras.layers.Reshape((100, 160), name="frames")(waveform)
        features = keras.layers.Dense(8, activation="relu", name="frame_features")(frames)
        pooled = keras.layers.GlobalAveragePooling1D(name="pool")(features)
        return keras.Model(waveform, classifier_head(pooled, config), name=config.name)


if __name__ == "__main__":
    register_test_models()
    from lean.cli import main

    sys.exit(main(sys.argv[1:]))
