// The sample app. Build the library first: `bindings/build-android.sh` writes
// target/android/baton-ffi.aar. Not built on the machines this project is built on (no Android
// SDK there); the view-model layer (src/main/java/health/baton/example/model) is compiled and
// tested on the JVM by the project's tests instead.
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
    id("org.jetbrains.kotlin.plugin.compose")
}

android {
    namespace = "health.baton.example"
    compileSdk = 35
    defaultConfig {
        applicationId = "health.baton.example"
        minSdk = 26
        targetSdk = 35
        buildConfigField("String", "BATON_SYNC_URL", "\"wss://baton.example.org/sync\"")
    }
    buildFeatures {
        compose = true
        buildConfig = true
    }
}

dependencies {
    implementation(files("../../../target/android/baton-ffi.aar"))
    implementation("net.java.dev.jna:jna:5.14.0@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
    implementation("androidx.activity:activity-compose:1.9.3")
    implementation(platform("androidx.compose:compose-bom:2024.12.01"))
    implementation("androidx.compose.material3:material3")
}
