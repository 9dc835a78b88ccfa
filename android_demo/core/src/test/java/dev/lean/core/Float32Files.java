package dev.lean.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;

/** Little-endian float32/float64 files as the Python side writes them (numpy "<f4", "<f8"). */
final class Float32Files {
    private Float32Files() {}

    static float[] readFloats(File file) throws IOException {
        ByteBuffer bytes = ByteBuffer.wrap(Files.readAllBytes(file.toPath()))
                .order(ByteOrder.LITTLE_ENDIAN);
        float[] values = new float[bytes.remaining() / 4];
        bytes.asFloatBuffer().get(values);
        return values;
    }

    static double[] readDoubles(File file) throws IOException {
        ByteBuffer bytes = ByteBuffer.wrap(Files.readAllBytes(file.toPath()))
                .order(ByteOrder.LITTLE_ENDIAN);
        double[] values = new double[bytes.remaining() / 8];
        bytes.asDoubleBuffer().get(values);
        return values;
    }

    static float[][] readRows(File file, int columns) throws IOException {
        float[] flat = readFloats(file);
        if (flat.length % columns != 0) {
            throw new IOException(file + ": " + flat.length + " floats is not rows of " + columns);
        }
        float[][] rows = new float[flat.length / columns][columns];
        for (int r = 0; r < rows.length; r++) {
            System.arraycopy(flat, r * columns, rows[r], 0, columns);
        }
        return rows;
    }

    static void writeRows(File file, float[][] rows) throws IOException {
        try (FileOutputStream out = new FileOutputStream(file)) {
            for (float[] row : rows) {
                ByteBuffer bytes = ByteBuffer.allocate(row.length * 4).order(ByteOrder.LITTLE_ENDIAN);
                bytes.asFloatBuffer().put(row);
                out.write(bytes.array());
            }
        }
    }
}
