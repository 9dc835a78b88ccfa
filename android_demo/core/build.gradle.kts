// Platform-independent logic of the demo: plain Java 8 so it also compiles with javac + JUnit 4
// alone (android_demo/core/run-jvm-tests.sh, used by CI without Gradle or Maven).
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}

tasks.withType<JavaCompile>().configureEach {
    // Java 8 language and library API, as run-jvm-tests.sh compiles it (javac --release 8).
    options.release.set(8)
}

dependencies {
    testImplementation(libs.junit)
}

tasks.test {
    useJUnit()
    // ./gradlew :core:test -Plean.golden.dir=DIR runs the golden parity tests against the files
    // written by tests/android_golden.py; without it they are skipped.
    (project.findProperty("lean.golden.dir") as String?)?.let {
        systemProperty("lean.golden.dir", it)
        systemProperty("lean.golden.required", "true")
    }
}
