package dev.lean.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * Reads the zip archive that TFLite Model Metadata appends to a .tflite file (associated files
 * such as the labels).
 *
 * <p>The archive is located from its end-of-central-directory record, so any bytes before it
 * (the model flatbuffer) are skipped whether the writer stored offsets relative to the zip or to
 * the file. Stored and deflated entries are supported and their CRC-32 is verified.
 */
public final class AppendedZip {
    private static final int END_SIGNATURE = 0x06054b50;
    private static final int CENTRAL_SIGNATURE = 0x02014b50;
    private static final int LOCAL_SIGNATURE = 0x04034b50;
    private static final int END_RECORD_SIZE = 22;
    private static final int MAX_COMMENT = 0xFFFF;

    private final ByteBuffer file;
    private final int centralStart;
    private final int entryCount;
    private final long prefix;

    private AppendedZip(ByteBuffer file, int centralStart, int entryCount, long prefix) {
        this.file = file;
        this.centralStart = centralStart;
        this.entryCount = entryCount;
        this.prefix = prefix;
    }

    /**
     * Finds the archive at the end of {@code file}.
     *
     * @param file the whole .tflite file
     * @return the archive, or null when the file ends without one (a model without associated
     *     files)
     */
    public static AppendedZip find(ByteBuffer file) throws ModelFormatException {
        ByteBuffer data = file.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        int limit = data.limit();
        int lowest = Math.max(0, limit - END_RECORD_SIZE - MAX_COMMENT);
        for (int at = limit - END_RECORD_SIZE; at >= lowest; at--) {
            int commentLength = data.getShort(at + 20) & 0xFFFF;
            // The record must end the file exactly; this rejects stray signature bytes.
            if (data.getInt(at) == END_SIGNATURE && at + END_RECORD_SIZE + commentLength == limit) {
                int entries = data.getShort(at + 10) & 0xFFFF;
                long centralSize = data.getInt(at + 12) & 0xFFFFFFFFL;
                long centralOffset = data.getInt(at + 16) & 0xFFFFFFFFL;
                if (centralOffset == 0xFFFFFFFFL || entries == 0xFFFF) {
                    throw new ModelFormatException("ZIP64 archives are not supported");
                }
                long centralStart = at - centralSize;
                if (centralStart < 0) {
                    throw new ModelFormatException("zip central directory lies before the file");
                }
                return new AppendedZip(data, (int) centralStart, entries,
                        centralStart - centralOffset);
            }
        }
        return null;
    }

    /** Names of the entries, in central-directory order. */
    public List<String> names() throws ModelFormatException {
        List<String> names = new ArrayList<>();
        int at = centralStart;
        for (int i = 0; i < entryCount; i++) {
            names.add(entryName(at));
            at = nextEntry(at);
        }
        return names;
    }

    /** The uncompressed bytes of entry {@code name}, or null when there is no such entry. */
    public byte[] read(String name) throws ModelFormatException {
        int at = centralStart;
        for (int i = 0; i < entryCount; i++) {
            if (entryName(at).equals(name)) {
                return readEntry(at, name);
            }
            at = nextEntry(at);
        }
        return null;
    }

    private String entryName(int central) throws ModelFormatException {
        require(central, 46, "central directory entry");
        if (file.getInt(central) != CENTRAL_SIGNATURE) {
            throw new ModelFormatException("bad zip central directory entry at byte " + central);
        }
        int nameLength = file.getShort(central + 28) & 0xFFFF;
        return string(central + 46, nameLength);
    }

    private int nextEntry(int central) {
        int nameLength = file.getShort(central + 28) & 0xFFFF;
        int extraLength = file.getShort(central + 30) & 0xFFFF;
        int commentLength = file.getShort(central + 32) & 0xFFFF;
        return central + 46 + nameLength + extraLength + commentLength;
    }

    private byte[] readEntry(int central, String name) throws ModelFormatException {
        int method = file.getShort(central + 10) & 0xFFFF;
        long expectedCrc = file.getInt(central + 16) & 0xFFFFFFFFL;
        long compressedSize = file.getInt(central + 20) & 0xFFFFFFFFL;
        long size = file.getInt(central + 24) & 0xFFFFFFFFL;
        long local = prefix + (file.getInt(central + 42) & 0xFFFFFFFFL);
        require(local, 30, "local header of " + name);
        if (file.getInt((int) local) != LOCAL_SIGNATURE) {
            throw new ModelFormatException("bad zip local header for " + name);
        }
        int nameLength = file.getShort((int) local + 26) & 0xFFFF;
        int extraLength = file.getShort((int) local + 28) & 0xFFFF;
        long dataStart = local + 30 + nameLength + extraLength;
        require(dataStart, compressedSize, "data of " + name);
        byte[] compressed = new byte[(int) compressedSize];
        ByteBuffer view = file.duplicate();
        view.position((int) dataStart);
        view.get(compressed);

        byte[] content;
        if (method == 0) {
            content = compressed;
        } else if (method == 8) {
            content = inflate(compressed, (int) size, name);
        } else {
            throw new ModelFormatException(
                    "zip entry " + name + " uses unsupported compression method " + method);
        }
        CRC32 crc = new CRC32();
        crc.update(content, 0, content.length);
        if (content.length != size || crc.getValue() != expectedCrc) {
            throw new ModelFormatException("zip entry " + name + " is corrupt (size or CRC-32)");
        }
        return content;
    }

    private static byte[] inflate(byte[] compressed, int size, String name)
            throws ModelFormatException {
        Inflater inflater = new Inflater(true);
        try {
            inflater.setInput(compressed);
            byte[] out = new byte[size];
            int done = 0;
            while (done < size && !inflater.finished()) {
                int n = inflater.inflate(out, done, size - done);
                if (n == 0 && (inflater.needsInput() || inflater.needsDictionary())) {
                    break;
                }
                done += n;
            }
            if (done != size) {
                throw new ModelFormatException("zip entry " + name + " is truncated");
            }
            return out;
        } catch (DataFormatException e) {
            throw new ModelFormatException("zip entry " + name + " is corrupt: " + e.getMessage(), e);
        } finally {
            inflater.end();
        }
    }

    private String string(int at, int length) throws ModelFormatException {
        require(at, length, "zip entry name");
        byte[] bytes = new byte[length];
        ByteBuffer view = file.duplicate();
        view.position(at);
        view.get(bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private void require(long at, long size, String what) throws ModelFormatException {
        if (at < 0 || size < 0 || at + size > file.limit()) {
            throw new ModelFormatException(what + " lies outside the file");
        }
    }
}
