// Compiling the generated bindings against Debian's kotlinx-coroutines 1.0.1 (the binding tests
// here): that release predates the `DelicateCoroutinesApi` opt-in marker the generated code
// names. Apps build with a current kotlinx-coroutines and leave this file out.
package kotlinx.coroutines

@RequiresOptIn
annotation class DelicateCoroutinesApi
