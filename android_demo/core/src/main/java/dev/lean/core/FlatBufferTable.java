package dev.lean.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * A read-only view of one FlatBuffers table inside a little-endian buffer.
 *
 * <p>Implements just what reading TFLite models and their Model Metadata needs: scalar fields,
 * strings, sub-tables, unions and vectors of scalars, strings and tables. Fields are addressed
 * by their slot index, which is their declaration order in the .fbs schema (a union takes two
 * slots: its type byte, then its value). Every offset is bounds-checked, so a corrupt or
 * truncated file ends in a {@link ModelFormatException}, never in a wrong value.
 */
public final class FlatBufferTable {
    private final ByteBuffer buffer;
    private final int position;
    private final int vtable;
    private final int vtableSize;

    private FlatBufferTable(ByteBuffer buffer, int position) throws ModelFormatException {
        this.buffer = buffer;
        this.position = checkRange(buffer, position, 4, "table");
        this.vtable = checkRange(buffer, position - buffer.getInt(position), 4, "vtable");
        this.vtableSize = buffer.getShort(vtable) & 0xFFFF;
        checkRange(buffer, vtable, vtableSize, "vtable");
    }

    /**
     * Opens the root table of a FlatBuffer that starts at byte 0 of {@code buffer}.
     *
     * @param buffer the whole FlatBuffer (its byte order is set to little-endian)
     * @param fileIdentifier the expected 4-character identifier (e.g. "TFL3", "M001"), or null
     *     to skip the check
     * @return the root table
     */
    public static FlatBufferTable root(ByteBuffer buffer, String fileIdentifier)
            throws ModelFormatException {
        ByteBuffer data = buffer.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        checkRange(data, 0, 8, "header");
        if (fileIdentifier != null) {
            byte[] identifier = new byte[4];
            for (int i = 0; i < 4; i++) {
                identifier[i] = data.get(4 + i);
            }
            String found = new String(identifier, StandardCharsets.US_ASCII);
            if (!found.equals(fileIdentifier)) {
                throw new ModelFormatException(
                        "file identifier is '" + printable(found) + "', expected '"
                                + fileIdentifier + "'");
            }
        }
        return new FlatBufferTable(data, data.getInt(0));
    }

    /** True when the field in {@code slot} is stored (absent fields take the schema default). */
    public boolean has(int slot) {
        return fieldOffset(slot) != 0;
    }

    public int getUint8(int slot, int defaultValue) throws ModelFormatException {
        int at = fieldPosition(slot, 1);
        return at < 0 ? defaultValue : buffer.get(at) & 0xFF;
    }

    public int getInt32(int slot, int defaultValue) throws ModelFormatException {
        int at = fieldPosition(slot, 4);
        return at < 0 ? defaultValue : buffer.getInt(at);
    }

    public long getUint32(int slot, long defaultValue) throws ModelFormatException {
        int at = fieldPosition(slot, 4);
        return at < 0 ? defaultValue : buffer.getInt(at) & 0xFFFFFFFFL;
    }

    public float getFloat32(int slot, float defaultValue) throws ModelFormatException {
        int at = fieldPosition(slot, 4);
        return at < 0 ? defaultValue : buffer.getFloat(at);
    }

    public long getUint64(int slot, long defaultValue) throws ModelFormatException {
        int at = fieldPosition(slot, 8);
        return at < 0 ? defaultValue : buffer.getLong(at);
    }

    /** The string in {@code slot}, or null when absent. */
    public String getString(int slot) throws ModelFormatException {
        int at = fieldPosition(slot, 4);
        return at < 0 ? null : readString(follow(at));
    }

    /** The sub-table in {@code slot} (also the value of a union), or null when absent. */
    public FlatBufferTable getTable(int slot) throws ModelFormatException {
        int at = fieldPosition(slot, 4);
        return at < 0 ? null : new FlatBufferTable(buffer, follow(at));
    }

    /** Number of elements of the vector in {@code slot}; 0 when absent. */
    public int vectorLength(int slot) throws ModelFormatException {
        int at = fieldPosition(slot, 4);
        return at < 0 ? 0 : vectorLengthAt(follow(at));
    }

    public int getInt32Element(int slot, int index) throws ModelFormatException {
        return buffer.getInt(elementPosition(slot, index, 4));
    }

    public String getStringElement(int slot, int index) throws ModelFormatException {
        return readString(follow(elementPosition(slot, index, 4)));
    }

    public FlatBufferTable getTableElement(int slot, int index) throws ModelFormatException {
        return new FlatBufferTable(buffer, follow(elementPosition(slot, index, 4)));
    }

    /** The bytes of the [ubyte] vector in {@code slot} as a little-endian view; null when absent. */
    public ByteBuffer getByteVector(int slot) throws ModelFormatException {
        int at = fieldPosition(slot, 4);
        if (at < 0) {
            return null;
        }
        int vector = follow(at);
        int length = vectorLengthAt(vector);
        checkRange(buffer, vector + 4, length, "byte vector");
        ByteBuffer view = buffer.duplicate();
        view.position(vector + 4);
        view.limit(vector + 4 + length);
        return view.slice().order(ByteOrder.LITTLE_ENDIAN);
    }

    private int fieldOffset(int slot) {
        int entry = 4 + 2 * slot;
        return entry + 2 <= vtableSize ? buffer.getShort(vtable + entry) & 0xFFFF : 0;
    }

    /** Absolute position of a field's bytes, or -1 when the field is absent. */
    private int fieldPosition(int slot, int size) throws ModelFormatException {
        int offset = fieldOffset(slot);
        return offset == 0 ? -1 : checkRange(buffer, position + offset, size, "field " + slot);
    }

    private int elementPosition(int slot, int index, int elementSize) throws ModelFormatException {
        int at = fieldPosition(slot, 4);
        if (at < 0) {
            throw new ModelFormatException("vector field " + slot + " is absent");
        }
        int vector = follow(at);
        int length = vectorLengthAt(vector);
        if (index < 0 || index >= length) {
            throw new ModelFormatException(
                    "index " + index + " outside vector of length " + length);
        }
        return checkRange(buffer, vector + 4 + index * elementSize, elementSize, "element");
    }

    private int follow(int at) throws ModelFormatException {
        long target = at + (buffer.getInt(at) & 0xFFFFFFFFL);
        if (target >= buffer.limit()) {
            throw new ModelFormatException("offset at byte " + at + " points past the end");
        }
        return (int) target;
    }

    private int vectorLengthAt(int vector) throws ModelFormatException {
        checkRange(buffer, vector, 4, "vector length");
        int length = buffer.getInt(vector);
        if (length < 0 || (long) vector + 4 + length > buffer.limit()) {
            throw new ModelFormatException("vector at byte " + vector + " runs past the end");
        }
        return length;
    }

    private String readString(int at) throws ModelFormatException {
        int length = vectorLengthAt(at);
        byte[] bytes = new byte[length];
        for (int i = 0; i < length; i++) {
            bytes[i] = buffer.get(at + 4 + i);
        }
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private static int checkRange(ByteBuffer buffer, int at, int size, String what)
            throws ModelFormatException {
        if (at < 0 || size < 0 || (long) at + size > buffer.limit()) {
            throw new ModelFormatException(what + " at byte " + at + " lies outside the buffer of "
                    + buffer.limit() + " bytes");
        }
        return at;
    }

    private static String printable(String text) {
        StringBuilder out = new StringBuilder();
        for (char c : text.toCharArray()) {
            out.append(c >= 0x20 && c < 0x7F ? String.valueOf(c) : String.format("\\x%02x", (int) c));
        }
        return out.toString();
    }
}
