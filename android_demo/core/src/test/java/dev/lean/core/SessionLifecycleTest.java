package dev.lean.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.Test;

public class SessionLifecycleTest {
    private static final long GUARD_S = 60; // only against a hung test, never a timing assumption

    private static final ThreadFactory THREADS = new ThreadFactory() {
        @Override
        public Thread newThread(Runnable body) {
            return new Thread(body, "lifecycle-test");
        }
    };

    /**
     * The shape of the app's tagging worker: load the model (held until the test releases it, as
     * a slow GPU set-up would be), then open the microphone only if still wanted, read until
     * stopped, release both.
     */
    static final class TaggingWorker implements SessionLifecycle.Body {
        final String name;
        final CountDownLatch loading = new CountDownLatch(1);
        final CountDownLatch modelLoaded = new CountDownLatch(1);
        /** Held until the test lets a stopped worker release its microphone. */
        final CountDownLatch release = new CountDownLatch(1);
        final CountDownLatch ended = new CountDownLatch(1);
        final List<String> events;
        final AtomicInteger openResources;
        final AtomicInteger maxOpenResources;

        TaggingWorker(String name, List<String> events, AtomicInteger open, AtomicInteger maxOpen) {
            this.name = name;
            this.events = events;
            this.openResources = open;
            this.maxOpenResources = maxOpen;
        }

        private void open(String what) {
            events.add(name + " opens " + what);
            int now = openResources.incrementAndGet();
            synchronized (maxOpenResources) {
                maxOpenResources.set(Math.max(maxOpenResources.get(), now));
            }
        }

        private void close(String what) {
            events.add(name + " closes " + what);
            openResources.decrementAndGet();
        }

        @Override
        public void run(SessionLifecycle.Session session) {
            try {
                open("interpreter");
                modelLoaded.countDown();
                if (!loading.await(GUARD_S, TimeUnit.SECONDS)) {
                    return;
                }
                if (!session.isActive()) {
                    return; // stopped during the set-up: the microphone is never opened
                }
                open("microphone");
                while (session.isActive()) {
                    Thread.sleep(1); // one blocking read of a hop
                }
                if (!release.await(GUARD_S, TimeUnit.SECONDS)) {
                    return;
                }
                close("microphone");
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } finally {
                close("interpreter");
                ended.countDown();
            }
        }
    }

    private final List<String> events = Collections.synchronizedList(new ArrayList<String>());
    private final AtomicInteger open = new AtomicInteger();
    private final AtomicInteger maxOpen = new AtomicInteger();

    private TaggingWorker worker(String name) {
        return new TaggingWorker(name, events, open, maxOpen);
    }

    @Test
    public void stopDuringASlowModelLoadNeverOpensTheMicrophone() throws Exception {
        SessionLifecycle lifecycle = new SessionLifecycle(THREADS);
        TaggingWorker first = worker("first");
        assertTrue(lifecycle.start(first));
        assertTrue(first.modelLoaded.await(GUARD_S, TimeUnit.SECONDS));
        // onPause while the model is still loading: returns at once, though the worker is busy.
        lifecycle.stop();
        lifecycle.stop(); // idempotent
        assertEquals(SessionLifecycle.State.STOPPING, lifecycle.state());
        first.loading.countDown();
        assertTrue(first.ended.await(GUARD_S, TimeUnit.SECONDS));
        awaitIdle(lifecycle);
        assertEquals(list("first opens interpreter", "first closes interpreter"), events);
    }

    @Test
    public void aQuickResumeWaitsForThePreviousWorkerToReleaseEverything() throws Exception {
        SessionLifecycle lifecycle = new SessionLifecycle(THREADS);
        TaggingWorker first = worker("first");
        TaggingWorker second = worker("second");
        TaggingWorker third = worker("third");
        assertTrue(lifecycle.start(first));
        assertFalse(lifecycle.start(third)); // a second start while running: nothing changes
        assertTrue(first.modelLoaded.await(GUARD_S, TimeUnit.SECONDS));
        first.loading.countDown();
        awaitEvent("first opens microphone");
        // onPause then onResume at once: the new session waits for the old worker.
        lifecycle.stop();
        assertTrue(lifecycle.start(second));
        assertEquals(SessionLifecycle.State.RESTART_PENDING, lifecycle.state());
        assertEquals(1, second.modelLoaded.getCount()); // not before the first has released all
        first.release.countDown();
        assertTrue(second.modelLoaded.await(GUARD_S, TimeUnit.SECONDS));
        second.loading.countDown();
        awaitEvent("second opens microphone");
        assertEquals(SessionLifecycle.State.RUNNING, lifecycle.state());
        lifecycle.stop();
        second.release.countDown();
        assertTrue(second.ended.await(GUARD_S, TimeUnit.SECONDS));
        awaitIdle(lifecycle);
        assertEquals(list("first opens interpreter", "first opens microphone",
                "first closes microphone", "first closes interpreter",
                "second opens interpreter", "second opens microphone",
                "second closes microphone", "second closes interpreter"), events);
        assertEquals(2, maxOpen.get()); // one interpreter and one microphone, never two of each
        assertEquals(1, third.ended.getCount()); // never ran
    }

    @Test
    public void stopAfterAPendingStartCancelsIt() throws Exception {
        SessionLifecycle lifecycle = new SessionLifecycle(THREADS);
        TaggingWorker first = worker("first");
        TaggingWorker second = worker("second");
        lifecycle.start(first);
        lifecycle.stop();
        lifecycle.start(second);
        lifecycle.stop(); // paused again before the first worker ended: nothing must start
        assertEquals(SessionLifecycle.State.STOPPING, lifecycle.state());
        first.loading.countDown();
        assertTrue(first.ended.await(GUARD_S, TimeUnit.SECONDS));
        awaitIdle(lifecycle);
        assertEquals(1, second.modelLoaded.getCount());
    }

    @Test
    public void aWorkerThatEndsByItselfLeavesTheLifecycleIdle() throws Exception {
        SessionLifecycle lifecycle = new SessionLifecycle(THREADS);
        final CountDownLatch ran = new CountDownLatch(1);
        lifecycle.start(new SessionLifecycle.Body() {
            @Override
            public void run(SessionLifecycle.Session session) {
                ran.countDown(); // e.g. the microphone failed: the worker reports it and returns
            }
        });
        assertTrue(ran.await(GUARD_S, TimeUnit.SECONDS));
        awaitIdle(lifecycle);
        TaggingWorker next = worker("next");
        assertTrue(lifecycle.start(next));
        assertTrue(next.modelLoaded.await(GUARD_S, TimeUnit.SECONDS));
        lifecycle.stop();
        next.loading.countDown();
        assertTrue(next.ended.await(GUARD_S, TimeUnit.SECONDS));
    }

    private static List<String> list(String... items) {
        List<String> result = new ArrayList<>();
        Collections.addAll(result, items);
        return result;
    }

    /** Waits for an event the worker thread will certainly log (guarded, not timed). */
    private void awaitEvent(String event) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(GUARD_S);
        while (!events.contains(event) && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertTrue(event + " never happened: " + events, events.contains(event));
    }

    private static void awaitIdle(SessionLifecycle lifecycle) throws InterruptedException {
        // The worker's thread marks the lifecycle idle just after its body returns.
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(GUARD_S);
        while (lifecycle.state() != SessionLifecycle.State.IDLE && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertEquals(SessionLifecycle.State.IDLE, lifecycle.state());
    }
}
