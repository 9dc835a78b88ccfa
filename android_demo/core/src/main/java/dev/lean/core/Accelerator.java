package dev.lean.core;

import java.util.Locale;

/** Where the model runs; the names are those of job.properties' delegate key (DEVICE_EVAL.md). */
public enum Accelerator {
    /** The plain CPU kernels (XNNPACK off). */
    CPU("cpu"),
    /** The XNNPACK CPU delegate (LiteRT's default on CPU). */
    XNNPACK("xnnpack"),
    /** The GPU delegate; falls back to CPU when the device or model is not supported. */
    GPU("gpu"),
    /** Android's Neural Networks API delegate; falls back to CPU when unavailable. */
    NNAPI("nnapi");

    private final String key;

    Accelerator(String key) {
        this.key = key;
    }

    public String key() {
        return key;
    }

    public static Accelerator fromKey(String key) {
        String normalized = key == null ? "" : key.trim().toLowerCase(Locale.ROOT);
        for (Accelerator accelerator : values()) {
            if (accelerator.key.equals(normalized)) {
                return accelerator;
            }
        }
        throw new IllegalArgumentException(
                "unknown delegate '" + key + "': expected one of cpu, xnnpack, gpu, nnapi");
    }
}
