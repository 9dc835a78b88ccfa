package dev.lean.core;

/** A model file (or file inside it) that cannot be read: the message names the reason in one line. */
public class ModelFormatException extends Exception {
    private static final long serialVersionUID = 1L;

    public ModelFormatException(String message) {
        super(message);
    }

    public ModelFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
