package dev.lean.core;

/** The requested accelerator (and the fallback, when allowed) could not run the model. */
public class AcceleratorException extends Exception {
    private static final long serialVersionUID = 1L;

    public AcceleratorException(String message, Throwable cause) {
        super(message, cause);
    }
}
