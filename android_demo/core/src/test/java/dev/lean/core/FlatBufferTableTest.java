package dev.lean.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.Test;

/** A FlatBuffer laid out by hand, byte by byte, following the FlatBuffers binary format. */
public class FlatBufferTableTest {
    /**
     * table Example { rate:uint; name:string; values:[int]; } with file identifier TEST:
     * rate=16000, name="hi", values=[1, -2, 3].
     */
    static ByteBuffer example() {
        ByteBuffer b = ByteBuffer.allocate(60).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(0, 20); // root table offset
        b.put(4, (byte) 'T').put(5, (byte) 'E').put(6, (byte) 'S').put(7, (byte) 'T');
        b.putShort(8, (short) 10); // vtable size: 4 + 3 slots
        b.putShort(10, (short) 16); // table size
        b.putShort(12, (short) 4).putShort(14, (short) 8).putShort(16, (short) 12);
        b.putInt(20, 20 - 8); // soffset from table to its vtable
        b.putInt(24, 16000);
        b.putInt(28, 36 - 28); // uoffset to the string
        b.putInt(32, 44 - 32); // uoffset to the vector
        b.putInt(36, 2);
        b.put(40, (byte) 'h').put(41, (byte) 'i');
        b.putInt(44, 3).putInt(48, 1).putInt(52, -2).putInt(56, 3);
        return b;
    }

    @Test
    public void readsScalarsStringsAndVectors() throws Exception {
        FlatBufferTable table = FlatBufferTable.root(example(), "TEST");
        assertEquals(16000L, table.getUint32(0, 0));
        assertEquals("hi", table.getString(1));
        assertEquals(3, table.vectorLength(2));
        int[] values = new int[3];
        for (int i = 0; i < 3; i++) {
            values[i] = table.getInt32Element(2, i);
        }
        assertArrayEquals(new int[] {1, -2, 3}, values);
    }

    @Test
    public void slotsPastTheVtableTakeTheirDefault() throws Exception {
        FlatBufferTable table = FlatBufferTable.root(example(), null);
        assertFalse(table.has(3));
        assertTrue(table.has(0));
        assertEquals(7L, table.getUint32(3, 7));
        assertNull(table.getString(5));
        assertEquals(0, table.vectorLength(4));
    }

    @Test
    public void wrongIdentifierIsReported() {
        try {
            FlatBufferTable.root(example(), "TFL3");
            fail("expected a ModelFormatException");
        } catch (ModelFormatException e) {
            assertEquals("file identifier is 'TEST', expected 'TFL3'", e.getMessage());
        }
    }

    @Test(expected = ModelFormatException.class)
    public void offsetsOutsideTheBufferAreErrors() throws Exception {
        ByteBuffer broken = example();
        broken.putInt(28, 1000); // the string now points past the end
        FlatBufferTable.root(broken, "TEST").getString(1);
    }

    @Test(expected = ModelFormatException.class)
    public void vectorIndexOutOfRangeIsAnError() throws Exception {
        FlatBufferTable.root(example(), "TEST").getInt32Element(2, 3);
    }

    @Test
    public void everyTruncationFailsCleanly() {
        ByteBuffer whole = example();
        for (int length = 0; length < whole.capacity(); length++) {
            byte[] prefix = new byte[length];
            ByteBuffer copy = whole.duplicate();
            copy.get(prefix);
            try {
                FlatBufferTable table = FlatBufferTable.root(ByteBuffer.wrap(prefix), "TEST");
                table.getUint32(0, 0);
                table.getString(1);
                table.getInt32Element(2, 2);
                fail("a " + length + "-byte prefix parsed completely");
            } catch (ModelFormatException expected) {
                // The only acceptable failure.
            }
        }
    }
}
