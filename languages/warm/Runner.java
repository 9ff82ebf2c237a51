// op-agent's warm runner for Java: a JVM started before the snapshot is taken (java's source
// launcher compiles this file as it starts), which compiles a program with the JDK's javac in
// its own process and runs it, instead of one JVM for `javac` and another for `java`.
//
// Started as `java [JVM options] Runner.java COMMAND...`, where COMMAND is the command it stands
// in for (`java -XX:... -cp . Main`; its last word is the main class). op-agent starts it in
// the directory the program will run in (a JVM cannot change its working directory), and it
// warms up: it compiles and runs a small program of its own under /tmp, then says "ready".
//
// Protocol with op-agent (fd 3 is a socketpair end): the runner writes "ready\n" once warm; the
// agent writes one JSON line {"file", "argv", "cwd", "env"} and optionally "compile" (the
// compile command, `javac ... Main.java`). With "compile", the runner compiles as that command
// would, its diagnostics on stderr, writes "done N\n" (N: javac's exit code) and reads the next
// line, the run's. Then it becomes the program: the main class loaded by the system class
// loader from the working directory (as `java -cp . Main` loads it: no class of a user was
// loaded in this JVM before), its main(String[]) called with the request's arguments on the
// thread "main", the exit status, the uncaught-exception report and System.exit() as a cold
// JVM's. A line with "prime": true is compiled and run the same way, with a class loader of its
// own that is dropped afterwards (the agent discards its output), then "ready\n" again.
//
// Every clone of the snapshot holds this JVM, so per-process random state that was seeded
// before the snapshot is seeded again from /dev/urandom before the program runs (the agent has
// added the clone's own entropy to the kernel by then): java.util.Random's seed uniquifier, the
// generators behind Math.random, StrictMath.random and Collections.shuffle, ThreadLocalRandom's
// seeder and probe generator and the main thread's own state, SplittableRandom's and the
// java.util.random algorithms' default generators, and NativePRNG's buffered bytes and mixing
// generator (SecureRandom, UUID.randomUUID). What is first used by the program seeds itself then.
//
// A program this JVM cannot run as a cold one would (a working directory other than the one it
// started in, as in a session's directory; an environment that sets what a JVM reads as it
// starts: CLASSPATH, JAVA_TOOL_OPTIONS, JDK_JAVA_OPTIONS, _JAVA_OPTIONS) is compiled and run by
// fresh `javac` and `java` processes, which the runner waits for.
//
// Groovy: started as `java [JVM options] -cp GROOVY-JAR [-D... as bin/groovy sets them]
// Runner.java groovy`, the runner stands in for `groovy FILE ARGS...`. It makes the class
// loader groovy's launcher (GroovyStarter) makes, from the same configuration (groovy.home's
// lib/*.jar and the working directory), once, and warms up by running a script of its own
// through groovy's entry point, groovy.ui.GroovyMain. A request is GroovyMain.main(FILE,
// ARGS...) called on a new thread named "main", with nothing of the runner under it: its own
// GroovyShell and class loader compile the script, and GroovyMain reports an uncaught exception
// ("Caught: ...", the stack sanitized as groovy does it) or a compile error and ends the JVM
// with 1, as the cold command does. What the groovy script reads as it starts (CLASSPATH,
// JAVA_OPTS, JAVA_HOME, JAVACMD, GROOVY_HOME, GROOVY_CONF, PROFILER, $HOME/.groovy/startup) or
// another directory sends the request to a fresh `groovy` process.

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;

public class Runner {
    static final sun.misc.Unsafe U = unsafe();
    static final JavaCompiler JAVAC = ToolProvider.getSystemJavaCompiler();
    // What programs commonly use, for javac to compile and the JVM to run before the snapshot.
    static final String WARMUP =
            "import java.io.*;\n"
            + "import java.util.*;\n"
            + "import java.util.function.*;\n"
            + "import java.util.stream.*;\n"
            + "public class Main {\n"
            + "    record Pair(String k, int v) {}\n"
            + "    enum Kind { A, B }\n"
            + "    interface Shape { double area(); }\n"
            + "    static class Sq implements Shape { public double area() { return 4.0; } }\n"
            + "    static <T extends Comparable<T>> T max(List<T> l) { return Collections.max(l); }\n"
            + "    static int sum(int... xs) { int s = 0; for (int x : xs) s += x; return s; }\n"
            + "    public static void main(String[] args) throws IOException {\n"
            + "        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));\n"
            + "        List<String> l = new ArrayList<>(Arrays.asList(args));\n"
            + "        Collections.sort(l);\n"
            + "        StringBuilder b = new StringBuilder();\n"
            + "        for (String s : l) b.append(s.toUpperCase()).append(' ');\n"
            + "        Map<String, Integer> m = new HashMap<>(Map.of(\"k\", 1));\n"
            + "        m.merge(\"k\", 2, Integer::sum);\n"
            + "        Function<Integer, Integer> sq = x -> x * x;\n"
            + "        int[] a = {3, 1, 2};\n"
            + "        Arrays.sort(a);\n"
            + "        String w = switch (l.size()) { case 0 -> \"none\"; default -> max(l); };\n"
            + "        try { Integer.parseInt(\"x\"); } catch (NumberFormatException e) { w += e.getMessage().length(); }\n"
            + "        System.out.println(\"hello \" + b + String.format(\"%d %s %.2f\", l.size(), l, 1.5) + w\n"
            + "            + new Pair(\"p\", sum(1, 2)) + Kind.B + new Sq().area() + sq.apply(a[2])\n"
            + "            + IntStream.range(0, 5).boxed().map(String::valueOf).collect(Collectors.joining(\",\"))\n"
            + "            + Math.max(1L, 2L) + Long.MAX_VALUE + Arrays.toString(a) + new TreeMap<>(m)\n"
            + "            + List.of(1, 2).stream().mapToInt(Integer::intValue).sum() + (char) ('a' + 1));\n"
            + "        System.err.println(m);\n"
            + "    }\n"
            + "}\n";
    // How many times: javac's and the program's methods are then compiled by the JIT (C1),
    // rather than interpreted, when a request runs them. After the first rounds, no new one
    // starts past WARMUP_NS, so that a loaded machine still makes its snapshot in time.
    static final int WARMUP_ROUNDS = 12, WARMUP_ROUNDS_MIN = 3;
    static final long WARMUP_NS = 150_000_000_000L;

    static List<String> command;
    static Set<String> seeded; // classes whose random state was seeded before the snapshot
    static InputStream ctlIn;
    static OutputStream ctlOut;

    public static void main(String[] args) throws Exception {
        command = List.of(args);
        if (command.isEmpty())
            throw new IllegalArgumentException(
                    "usage: Runner.java JAVA-COMMAND... MAIN-CLASS | Runner.java groovy");
        if (Path.of(command.get(0)).getFileName().toString().equals("groovy"))
            Groovy.setUp();
        FileDescriptor fd3 = new FileDescriptor();
        U.putInt(fd3, U.objectFieldOffset(FileDescriptor.class.getDeclaredField("fd")), 3);
        // Buffered: the agent sends the next line only once this one is answered.
        ctlIn = new BufferedInputStream(new FileInputStream(fd3));
        ctlOut = new FileOutputStream(fd3);
        warmUp();
        seeded = seededBeforeSnapshot();
        System.gc(); // the snapshot holds a compact heap, and a request starts with an empty young generation
        ctlOut.write("ready\n".getBytes(StandardCharsets.US_ASCII));
        Map<String, Object> req = readLine();
        while (Boolean.TRUE.equals(req.get("prime"))) {
            // The request's first steps too, undone by the request's own.
            setEnv(env(req));
            reseed();
            prime(req, true);
            System.out.flush();
            System.err.flush();
            ctlOut.write("ready\n".getBytes(StandardCharsets.US_ASCII));
            req = readLine();
        }
        boolean fresh = needsFreshJvm(req);
        if (req.get("compile") != null) {
            int status = fresh ? compileFresh(req) : compile(req, false);
            System.out.flush();
            System.err.flush();
            ctlOut.write(("done " + status + "\n").getBytes(StandardCharsets.US_ASCII));
            req = readLine(); // the run's (the agent ends this process when the compile failed)
            fresh = needsFreshJvm(req);
        }
        ctlIn.close();
        ctlOut.close();
        if (fresh)
            System.exit(runFresh(req));
        run(req);
    }

    // ---- the job's line ----

    static Map<String, Object> readLine() throws IOException {
        ByteArrayOutputStream line = new ByteArrayOutputStream();
        for (;;) {
            int c = ctlIn.read();
            if (c < 0)
                Runtime.getRuntime().halt(70); // the agent went away
            if (c == '\n')
                break;
            line.write(c);
        }
        Object v = new Json(line.toString(StandardCharsets.UTF_8)).parse();
        if (!(v instanceof Map))
            throw new IOException("the job is not a JSON object");
        @SuppressWarnings("unchecked")
        Map<String, Object> m = (Map<String, Object>) v;
        return m;
    }

    @SuppressWarnings("unchecked")
    static List<String> strings(Object v) {
        return v == null ? List.of() : (List<String>) (List<?>) v;
    }

    @SuppressWarnings("unchecked")
    static Map<String, String> env(Map<String, Object> req) {
        return (Map<String, String>) (Map<?, ?>) req.getOrDefault("env", Map.of());
    }

    static String mainClass() {
        return command.get(command.size() - 1);
    }

    // ---- what a cold JVM would do differently ----

    static boolean needsFreshJvm(Map<String, Object> req) {
        for (String k : env(req).keySet())
            if (k.equals("CLASSPATH") || k.equals("JAVA_TOOL_OPTIONS") || k.equals("JDK_JAVA_OPTIONS")
                    || k.equals("_JAVA_OPTIONS"))
                return true;
        if (Groovy.on() && Groovy.readsAtStart(env(req)))
            return true;
        // The agent starts the runner in the run's directory: the same path (user.dir, which
        // java.io.File resolves against, is read once as the JVM starts).
        return !Path.of(System.getProperty("user.dir")).equals(Path.of((String) req.get("cwd")));
    }

    static int waitFor(List<String> argv, Map<String, Object> req, boolean withStdin)
            throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(argv).directory(new File((String) req.get("cwd")));
        pb.environment().clear();
        pb.environment().putAll(env(req));
        pb.redirectOutput(ProcessBuilder.Redirect.INHERIT);
        pb.redirectError(ProcessBuilder.Redirect.INHERIT);
        pb.redirectInput(withStdin ? ProcessBuilder.Redirect.INHERIT
                                   : ProcessBuilder.Redirect.from(new File("/dev/null")));
        Process p = pb.start();
        int status = p.waitFor();
        return status > 128 ? status : status & 0xff;
    }

    static int compileFresh(Map<String, Object> req) throws IOException, InterruptedException {
        return waitFor(strings(req.get("compile")), req, false);
    }

    static int runFresh(Map<String, Object> req) throws IOException, InterruptedException {
        List<String> argv = new ArrayList<>(command);
        if (Groovy.on())
            argv.add(Groovy.script(req));
        argv.addAll(strings(req.get("argv")));
        return waitFor(argv, req, true);
    }

    // ---- compile ----

    // javac's arguments from the compile command: its name and the launcher's -J options go.
    // Elsewhere than in the process's directory (a prime), the sources are named by their
    // absolute paths and the classes written next to them.
    static int compile(Map<String, Object> req, boolean elsewhere) {
        List<String> argv = strings(req.get("compile"));
        List<String> args = new ArrayList<>();
        String cwd = (String) req.get("cwd");
        for (String a : argv.subList(1, argv.size())) {
            if (a.startsWith("-J"))
                continue;
            if (elsewhere && a.endsWith(".java") && !a.startsWith("/"))
                a = cwd + "/" + a;
            args.add(a);
        }
        if (elsewhere)
            args.addAll(0, List.of("-d", cwd, "-cp", cwd, "-sourcepath", cwd));
        return JAVAC.run(null, System.out, System.err, args.toArray(new String[0]));
    }

    // ---- run ----

    // The program's main(String[]) on this thread, renamed "main" as a cold JVM's; then, as a
    // cold JVM ends: the other non-daemon threads are waited for, and it exits with 0, or 1
    // after an uncaught exception (reported by the thread's handler, as a cold JVM's).
    static void run(Map<String, Object> req) throws Exception {
        setEnv(env(req));
        reseed();
        if (Groovy.on()) {
            Groovy.run(req);
            return;
        }
        String[] args = strings(req.get("argv")).toArray(new String[0]);
        Thread self = Thread.currentThread();
        self.setName("main");
        Method main = findMain(ClassLoader.getSystemClassLoader());
        if (main == null)
            System.exit(1);
        Throwable thrown = null;
        try {
            main.invoke(null, (Object) args);
        } catch (InvocationTargetException e) {
            thrown = e.getCause();
        } catch (ExceptionInInitializerError e) {
            thrown = e; // the class's static initializer, run as main() is called
        }
        if (thrown != null) {
            trim(thrown, Collections.newSetFromMap(new IdentityHashMap<>()));
            self.getUncaughtExceptionHandler().uncaughtException(self, thrown);
        }
        exitAsJvm(self, thrown == null ? 0 : 1);
    }

    // As a cold JVM ends once its main thread is done: the other non-daemon threads are waited
    // for, then it exits with status.
    static void exitAsJvm(Thread self, int status) {
        awaitOthers(self);
        System.exit(status);
    }

    // The non-daemon threads but self, waited for until none is left.
    static void awaitOthers(Thread self) {
        ThreadGroup root = self.getThreadGroup();
        while (root.getParent() != null)
            root = root.getParent();
        for (;;) {
            Thread other = null;
            Thread[] all = new Thread[root.activeCount() + 16];
            int n = root.enumerate(all, true);
            for (int i = 0; i < n; i++)
                if (all[i] != self && !all[i].isDaemon() && all[i].isAlive())
                    other = all[i];
            if (other == null)
                break;
            try {
                other.join();
            } catch (InterruptedException e) {
                // as DestroyJavaVM: keep waiting
            }
        }
    }

    // The main method as the java launcher finds it, or null after its message.
    static Method findMain(ClassLoader loader) {
        String name = mainClass();
        Class<?> c;
        try {
            c = Class.forName(name, false, loader);
        } catch (ClassNotFoundException | LinkageError e) {
            System.err.println("Error: Could not find or load main class " + name);
            System.err.println("Caused by: " + e);
            return null;
        }
        try {
            Method m = c.getMethod("main", String[].class);
            if (Modifier.isStatic(m.getModifiers()) && m.getReturnType() == void.class) {
                m.setAccessible(true);
                return m;
            }
        } catch (NoSuchMethodException e) {
            // reported below
        }
        System.err.println("Error: Main method not found in class " + name
                + ", please define the main method as:\n"
                + "   public static void main(String[] args)\n"
                + "or a JavaFX application class must extend javafx.application.Application");
        return null;
    }

    // A cold JVM calls main from native code: the frames under it (reflection, this runner,
    // the source launcher) are not in its stack traces, nor in their causes'.
    static void trim(Throwable t, Set<Throwable> seen) {
        if (t == null || !seen.add(t))
            return;
        StackTraceElement[] st = t.getStackTrace();
        int n = st.length;
        while (n > 0 && ours(st[n - 1]))
            n--;
        // none left: thrown below the program's frames, where the java launcher's JNI call
        // shows none either (an ExceptionInInitializerError of the main class's initializer)
        if (n < st.length)
            t.setStackTrace(Arrays.copyOf(st, n));
        trim(t.getCause(), seen);
        for (Throwable s : t.getSuppressed())
            trim(s, seen);
    }

    static boolean ours(StackTraceElement e) {
        String c = e.getClassName();
        return c.equals(Runner.class.getName()) || c.startsWith("jdk.internal.reflect.")
                || c.equals("java.lang.reflect.Method") || c.startsWith("com.sun.tools.javac.launcher.");
    }

    // ---- environment and random state ----

    // System.getenv() and what ProcessBuilder passes on become the request's environment: the
    // JDK's own map behind them, changed through its writable view.
    @SuppressWarnings("unchecked")
    static void setEnv(Map<String, String> env) throws Exception {
        Map<String, String> view = System.getenv();
        Field m = Class.forName("java.util.Collections$UnmodifiableMap").getDeclaredField("m");
        Map<String, String> inner = (Map<String, String>) U.getObject(view, U.objectFieldOffset(m));
        inner.clear();
        inner.putAll(env);
    }

    static Object staticField(Class<?> c, String name) throws NoSuchFieldException {
        Field f = c.getDeclaredField(name);
        return U.getObject(U.staticFieldBase(f), U.staticFieldOffset(f));
    }

    // The classes of SEEDED initialized by now: before the snapshot, what every clone shares.
    // (A class first initialized in the clone seeds itself there, as in a cold JVM.)
    @SuppressWarnings("removal")
    static Set<String> seededBeforeSnapshot() {
        Set<String> done = new HashSet<>();
        for (String name : SEEDED)
            try {
                Class<?> c = Class.forName(name, false, ClassLoader.getPlatformClassLoader());
                if (!U.shouldBeInitialized(c))
                    done.add(name);
            } catch (ClassNotFoundException e) {
                // not in this JDK
            }
        return done;
    }

    // The class when it was initialized before the snapshot (its state seeded then), else null.
    static Class<?> initialized(String name) throws ClassNotFoundException {
        return seeded.contains(name) ? Class.forName(name, false, ClassLoader.getPlatformClassLoader())
                                     : null;
    }

    static final String MATH = "java.lang.Math$RandomNumberGeneratorHolder";
    static final String STRICT_MATH = "java.lang.StrictMath$RandomNumberGeneratorHolder";
    static final String TLR = "java.util.concurrent.ThreadLocalRandom";
    static final String RANDOM_IO = "sun.security.provider.NativePRNG$RandomIO";
    static final String[] NATIVE_PRNGS = {"sun.security.provider.NativePRNG",
                                          "sun.security.provider.NativePRNG$Blocking",
                                          "sun.security.provider.NativePRNG$NonBlocking"};
    static final String[] DEFAULT_GENS = {
        "java.util.SplittableRandom", "jdk.random.L32X64MixRandom", "jdk.random.L64X128MixRandom",
        "jdk.random.L64X128StarStarRandom", "jdk.random.L64X256MixRandom",
        "jdk.random.L64X1024MixRandom", "jdk.random.L128X128MixRandom",
        "jdk.random.L128X256MixRandom", "jdk.random.L128X1024MixRandom",
        "jdk.random.Xoroshiro128PlusPlus", "jdk.random.Xoshiro256PlusPlus",
    };

    static final List<String> SEEDED = new ArrayList<>();

    static {
        SEEDED.addAll(List.of(MATH, STRICT_MATH, TLR, RANDOM_IO));
        SEEDED.addAll(List.of(NATIVE_PRNGS));
        SEEDED.addAll(List.of(DEFAULT_GENS));
    }

    static void reseed() throws Exception {
        byte[] b = new byte[256];
        try (FileInputStream in = new FileInputStream("/dev/urandom")) {
            for (int off = 0; off < b.length;) {
                int k = in.read(b, off, b.length - off);
                if (k < 0)
                    throw new IOException("/dev/urandom ended");
                off += k;
            }
        }
        ByteBuffer seed = ByteBuffer.wrap(b);
        ((AtomicLong) staticField(Random.class, "seedUniquifier")).set(seed.getLong());
        // Collections.shuffle's generator, made at its first use: if that was before the snapshot.
        Random shuffle = (Random) staticField(Collections.class, "r");
        if (shuffle != null)
            shuffle.setSeed(seed.getLong());
        for (String h : new String[] {MATH, STRICT_MATH}) {
            Class<?> c = initialized(h);
            if (c != null)
                ((Random) staticField(c, "randomNumberGenerator")).setSeed(seed.getLong());
        }
        Class<?> tlr = initialized(TLR);
        if (tlr != null) {
            ((AtomicLong) staticField(tlr, "seeder")).set(seed.getLong());
            ((AtomicInteger) staticField(tlr, "probeGenerator")).set(seed.getInt());
        }
        // This thread's: 0 makes ThreadLocalRandom.current() seed it again from the seeder.
        Thread self = Thread.currentThread();
        U.putLong(self, U.objectFieldOffset(Thread.class.getDeclaredField("threadLocalRandomSeed")), 0);
        U.putInt(self, U.objectFieldOffset(Thread.class.getDeclaredField("threadLocalRandomProbe")), 0);
        U.putInt(self, U.objectFieldOffset(
                Thread.class.getDeclaredField("threadLocalRandomSecondarySeed")), 0);
        for (String g : DEFAULT_GENS) {
            Class<?> c = initialized(g);
            if (c != null)
                ((AtomicLong) staticField(c, "defaultGen")).set(seed.getLong());
        }
        Class<?> io = initialized(RANDOM_IO);
        // Its bytes of /dev/urandom are read again, and its mixing SHA1PRNG made again (seeded
        // from /dev/urandom), in each instance (NativePRNG, Blocking, NonBlocking).
        for (String variant : NATIVE_PRNGS) {
            Class<?> v = initialized(variant);
            Object o = v != null && io != null ? staticField(v, "INSTANCE") : null;
            if (o != null)
                resetRandomIO(io, o);
        }
    }

    static void resetRandomIO(Class<?> io, Object o) throws NoSuchFieldException {
        U.putObject(o, U.objectFieldOffset(io.getDeclaredField("mixRandom")), null);
        U.putInt(o, U.objectFieldOffset(io.getDeclaredField("buffered")), 0);
    }

    static sun.misc.Unsafe unsafe() {
        try {
            Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            return (sun.misc.Unsafe) f.get(null);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    // ---- warming up ----

    // Compile and run WARMUP under /tmp as a request is (javac in this process, a class loader,
    // main by reflection, an exception's report), its output dropped, nothing of it kept.
    static void warmUp() throws Exception {
        // (Files.createTempDirectory would draw its name from a SecureRandom.)
        Path dir = Files.createDirectories(Path.of("/tmp", "op-warm-" + ProcessHandle.current().pid()));
        try {
            String file = Groovy.on() ? "main.groovy" : "Main.java";
            Files.writeString(dir.resolve(file), Groovy.on() ? Groovy.WARMUP : WARMUP);
            Map<String, Object> req = new LinkedHashMap<>();
            req.put("cwd", dir.toString());
            req.put("file", dir.resolve(file).toString());
            req.put("argv", List.of("b", "a"));
            if (!Groovy.on())
                req.put("compile", List.of("javac", "-encoding", "UTF-8", "Main.java"));
            PrintStream out = System.out, err = System.err;
            PrintStream drop = new PrintStream(OutputStream.nullOutputStream(), true);
            System.setOut(drop);
            System.setErr(drop);
            try {
                long until = System.nanoTime() + WARMUP_NS;
                int min = WARMUP_ROUNDS_MIN;
                if (Groovy.on()) {
                    until = System.nanoTime() - Groovy.sinceStartNs() + Groovy.WARMUP_NS;
                    min = 1;
                }
                for (int i = 0; i < WARMUP_ROUNDS && (i < min || System.nanoTime() < until); i++)
                    prime(req, i == 0);
                Throwable t = new IllegalStateException("warm-up");
                trim(t, Collections.newSetFromMap(new IdentityHashMap<>()));
                t.printStackTrace(drop);
                if (Groovy.on())
                    Groovy.warmErrors(drop);
            } finally {
                System.setOut(out);
                System.setErr(err);
            }
        } finally {
            try (var s = Files.list(dir)) {
                for (Path p : (Iterable<Path>) s::iterator)
                    Files.deleteIfExists(p);
            }
            Files.deleteIfExists(dir);
        }
    }

    // Compile and run a program of ours from its own directory with a class loader of its own.
    // asRequest: groovy's script runs on the request's path (see Groovy.prime).
    static void prime(Map<String, Object> req, boolean asRequest) throws Exception {
        if (Groovy.on()) {
            Groovy.prime(req, asRequest);
            return;
        }
        if (req.get("compile") != null && compile(req, true) != 0)
            return;
        File dir = new File((String) req.get("cwd"));
        try (URLClassLoader loader = new URLClassLoader(new URL[] {dir.toURI().toURL()},
                     ClassLoader.getSystemClassLoader())) {
            Method main = findMain(loader);
            if (main == null)
                return;
            try {
                main.invoke(null, (Object) strings(req.get("argv")).toArray(new String[0]));
            } catch (InvocationTargetException e) {
                // ours, and its output is dropped anyway
            }
        }
    }

    // ---- groovy ----

    static final class Groovy {
        static final String MAIN = "groovy.ui.GroovyMain";
        // What scripts commonly use, for groovy to compile and run before the snapshot. It
        // makes no JDK exception: groovy calls a JDK constructor through reflection, and one
        // called often before the snapshot would have its reflective accessor generated (the
        // JVM does that after 15 calls), so that a request's stack trace through it would name
        // that accessor where a cold JVM's names the native one.
        static final String WARMUP =
                "class WarmError extends Exception { WarmError(String m) { super(m) } }\n"
                + "class Point { int x, y; String toString() { \"($x, $y)\" } }\n"
                + "def f(int n) { n <= 1 ? 1 : n * f(n - 1) }\n"
                + "def l = args.toList().sort()\n"
                + "def m = [k: 1, j: 2]\n"
                + "m.k += 2\n"
                + "def sq = { it * it }\n"
                + "println \"hello ${l.join(' ')} ${l.size()} ${m} ${sq(3)}\"\n"
                + "println String.format('%d %s %.2f', l.size(), l, 1.5d)\n"
                + "println((1..5).collect { it * 2 }.findAll { it > 2 }.inject(0) { a, b -> a + b })\n"
                + "def s = new StringBuilder()\n"
                + "l.each { s << it.toUpperCase() << ' ' }\n"
                + "println s.toString().trim()\n"
                + "println([3, 1, 2].sort() + [4] - [1])\n"
                + "println new Point(x: 1, y: 2)\n"
                + "println 'a-b-c'.split('-').reverse().join(',') + ('abc' =~ /b/).find()\n"
                + "int total = 0\n"
                + "for (int i = 0; i < 10; i++) total += i\n"
                + "println total + f(10) + 10.0 / 4 + 7.intdiv(2) + 2 ** 10\n"
                + "try { throw new WarmError('w') } catch (WarmError e) { System.err.println(e.message) }\n"
                + "System.err.println(m.collectEntries { k, v -> [(k): v * 2] })\n"
                + "println groovy.json.JsonOutput.toJson([a: [1, 2], b: 'c'])\n"
                + "println new groovy.json.JsonSlurper().parseText('{\"x\": [1, 2]}').x.sum()\n"
                + "def r = new BufferedReader(new InputStreamReader(System.in))\n"
                + "System.out.printf('%s %s%n', l.max(), m.values().sum())\n";

        // No new warm-up round after this long since the JVM started (at least one is run):
        // under TCG on a loaded machine the JVM's start, the compile of this file and a round
        // each take tens of seconds, and the agent waits at most 300 s for "ready".
        static final long WARMUP_NS = 120_000_000_000L;

        static ClassLoader loader; // groovy's, as its launcher makes it: null unless groovy
        static Class<?> main; // GroovyMain in it
        static MethodHandle mainHandle; // its main: warm-up rounds after the first (no reflective call)
        static MethodHandle closureNew; // new MethodClosure(Object, String)
        static MethodHandle curry; // Closure.curry(Object[])

        static boolean on() {
            return loader != null;
        }

        static long sinceStartNs() {
            return ProcessHandle.current().info().startInstant()
                    .map(t -> java.time.Duration.between(t, java.time.Instant.now()).toNanos())
                    .orElse(0L);
        }

        // The class loader GroovyStarter makes (its --classpath ".", then the configuration
        // named by the groovy.starter.conf property), and GroovyMain in it.
        static void setUp() throws Exception {
            ClassLoader sys = ClassLoader.getSystemClassLoader();
            Class<?> lcClass = Class.forName("org.codehaus.groovy.tools.LoaderConfiguration", true, sys);
            Object lc = lcClass.getConstructor().newInstance();
            lcClass.getMethod("addClassPath", String.class).invoke(lc, ".");
            lcClass.getMethod("setMainClass", String.class).invoke(lc, MAIN);
            String conf = System.getProperty("groovy.starter.conf");
            if (conf == null)
                throw new IllegalArgumentException("groovy: -Dgroovy.starter.conf is not set");
            try (InputStream in = new FileInputStream(conf)) {
                lcClass.getMethod("configure", InputStream.class).invoke(lc, in);
            }
            Class<?> rootLoader = Class.forName("org.codehaus.groovy.tools.RootLoader", true, sys);
            ClassLoader l = (ClassLoader) rootLoader.getConstructor(lcClass).newInstance(lc);
            main = l.loadClass(MAIN);
            MethodHandles.Lookup lookup = MethodHandles.publicLookup();
            mainHandle = lookup.findStatic(main, "main", MethodType.methodType(void.class, String[].class));
            Class<?> mc = l.loadClass("org.codehaus.groovy.runtime.MethodClosure");
            closureNew = lookup.findConstructor(
                    mc, MethodType.methodType(void.class, Object.class, String.class));
            curry = lookup.findVirtual(mc, "curry", MethodType.methodType(
                                l.loadClass("groovy.lang.Closure"), Object[].class))
                            .asFixedArity();
            loader = l;
        }

        // What bin/groovy reads as it starts, so that only a fresh `groovy` does as it says.
        static boolean readsAtStart(Map<String, String> env) {
            for (String k : List.of("JAVA_OPTS", "JAVA_HOME", "JAVACMD", "GROOVY_HOME", "GROOVY_CONF",
                         "PROFILER"))
                if (env.containsKey(k))
                    return true;
            return Files.isReadable(Path.of(env.getOrDefault("HOME", "") + "/.groovy/startup"));
        }

        // The script as the cold command names it: relative to the run's directory.
        static String script(Map<String, Object> req) {
            String file = (String) req.get("file"), cwd = (String) req.get("cwd");
            return file.startsWith(cwd + "/") ? file.substring(cwd.length() + 1) : file;
        }

        static String[] args(String script, Map<String, Object> req) {
            List<String> a = new ArrayList<>();
            a.add(script);
            a.addAll(strings(req.get("argv")));
            return a.toArray(new String[0]);
        }

        // GroovyMain on a script of ours (named by its path). asRequest: on the request's path
        // (onMainThread, then the wait for other threads), so that what a request runs after
        // the hand-off, but the exit, was run in this process before (under emulation, code run
        // for the first time in a clone is translated then). Else GroovyMain is called on this
        // thread through a method handle: the warm-up's rounds after the first, which would
        // otherwise call GroovyMain.main and MethodClosure.doCall through reflection often
        // enough for the JVM to generate their accessors (see WARMUP), while a clone calls each
        // of them twice (its prime, its request). This thread's context class loader is
        // groovy's meanwhile, as RootLoader sets it when it is made; GroovyMain sets it to its
        // script's, and it is put back. GroovyMain ends the JVM when the script fails: ours
        // do not.
        static void prime(Map<String, Object> req, boolean asRequest) throws Exception {
            Thread self = Thread.currentThread();
            ClassLoader context = self.getContextClassLoader();
            String[] args = args((String) req.get("file"), req);
            try {
                if (asRequest) {
                    onMainThread(args);
                    awaitOthers(self);
                    return;
                }
                self.setContextClassLoader(loader);
                mainHandle.invoke(args);
            } catch (Exception | Error e) {
                throw e;
            } catch (Throwable t) {
                throw new IllegalStateException(t);
            } finally {
                self.setContextClassLoader(context);
            }
        }

        // The request: GroovyMain.main on a new thread "main" (onMainThread); GroovyMain reports
        // a failure itself and exits with 1; else the JVM ends as a cold one (exitAsJvm), with
        // 1 if something escaped GroovyMain.
        static void run(Map<String, Object> req) throws Exception {
            boolean threw;
            try {
                threw = onMainThread(args(script(req), req));
            } catch (Exception | Error e) {
                throw e;
            } catch (Throwable t) {
                throw new IllegalStateException(t);
            }
            exitAsJvm(Thread.currentThread(), threw ? 1 : 0);
        }

        // GroovyMain.main(args) on a new thread "main" (this one is the JVM's first thread,
        // under the source launcher), reached through a groovy MethodClosure and one reflective
        // call, as GroovyStarter reaches it: every frame under GroovyMain is one that groovy's
        // stack trace sanitizing takes out, but for the three of the JVM's native reflective
        // call that a cold run's traces end with. The closure is made and curried through
        // method handles (no reflective call of ours). True if something escaped GroovyMain.
        static boolean onMainThread(String[] args) throws Throwable {
            Thread self = Thread.currentThread();
            self.setContextClassLoader(loader); // the new thread's, as RootLoader sets it
            Object closure = closureNew.invoke((Object) main, "main");
            Runnable body = (Runnable) curry.invoke(closure, new Object[] {args});
            AtomicBoolean threw = new AtomicBoolean();
            Thread t = new Thread(body, "main");
            t.setUncaughtExceptionHandler((th, e) -> {
                threw.set(true);
                th.getThreadGroup().uncaughtException(th, e);
            });
            t.start();
            for (;;)
                try {
                    t.join();
                    break;
                } catch (InterruptedException e) {
                    // keep waiting
                }
            return threw.get();
        }

        // A compile error's message and an exception's sanitized report, made once.
        static void warmErrors(PrintStream drop) throws Exception {
            Class<?> shell = loader.loadClass("groovy.lang.GroovyShell");
            Object sh = shell.getConstructor().newInstance();
            try {
                shell.getMethod("parse", String.class).invoke(sh, "println 1\ndef x =\n");
            } catch (InvocationTargetException e) {
                drop.println(e.getCause());
            }
            Throwable t = new IllegalStateException("warm-up");
            loader.loadClass("org.codehaus.groovy.runtime.StackTraceUtils")
                    .getMethod("deepSanitize", Throwable.class)
                    .invoke(null, t);
            drop.println("Caught: " + t);
            t.printStackTrace(drop);
        }
    }

    // ---- a small JSON reader: the agent's line (objects, arrays, strings, literals) ----

    static final class Json {
        final String s;
        int i;

        Json(String s) {
            this.s = s;
        }

        Object parse() throws IOException {
            Object v = value();
            ws();
            if (i != s.length())
                throw new IOException("trailing bytes in the job");
            return v;
        }

        void ws() {
            while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0)
                i++;
        }

        Object value() throws IOException {
            ws();
            if (i >= s.length())
                throw new IOException("the job ends early");
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                ws();
                if (s.charAt(i) == '}') {
                    i++;
                    return m;
                }
                for (;;) {
                    ws();
                    String k = string();
                    ws();
                    expect(':');
                    m.put(k, value());
                    ws();
                    if (s.charAt(i++) == '}')
                        return m;
                }
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                ws();
                if (s.charAt(i) == ']') {
                    i++;
                    return l;
                }
                for (;;) {
                    l.add(value());
                    ws();
                    if (s.charAt(i++) == ']')
                        return l;
                }
            }
            if (c == '"')
                return string();
            for (String lit : new String[] {"true", "false", "null"})
                if (s.startsWith(lit, i)) {
                    i += lit.length();
                    return lit.equals("null") ? null : Boolean.valueOf(lit.equals("true"));
                }
            int start = i;
            while (i < s.length() && "+-.eE0123456789".indexOf(s.charAt(i)) >= 0)
                i++;
            if (start == i)
                throw new IOException("unexpected character in the job");
            return Double.valueOf(s.substring(start, i));
        }

        void expect(char c) throws IOException {
            if (s.charAt(i++) != c)
                throw new IOException("expected " + c + " in the job");
        }

        String string() throws IOException {
            expect('"');
            StringBuilder b = new StringBuilder();
            for (;;) {
                char c = s.charAt(i++);
                if (c == '"')
                    return b.toString();
                if (c != '\\') {
                    b.append(c);
                    continue;
                }
                char e = s.charAt(i++);
                switch (e) {
                case 'n': b.append('\n'); break;
                case 't': b.append('\t'); break;
                case 'r': b.append('\r'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'u':
                    b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                    i += 4;
                    break;
                default: b.append(e);
                }
            }
        }
    }
}
