// The Android sample's view-model layer on the JVM, against a real Baton server: the worklist
// by role, acknowledging from it, the offline banner, the required-field completion form (its
// own checks and the rules' refusal mapped onto a field), and handing off.
//
// Run by tests/tests/bindings.rs with the bindings' suite; exits non-zero on the first failure.
import health.baton.example.model.CompletionForm
import health.baton.example.model.TaskModel
import health.baton.example.model.WorklistModel
import health.baton.ffi.Connection
import health.baton.ffi.Scope
import health.baton.statusUpdates
import health.baton.test.Server
import health.baton.test.check
import health.baton.test.consult
import health.baton.test.device
import health.baton.test.eventually
import health.baton.test.within
import kotlinx.coroutines.runBlocking

fun main() = runBlocking {
    val binary = System.getenv("BATON_SERVER_BIN") ?: error("BATON_SERVER_BIN must name the server")
    Server(binary).use { server ->
        val nurse = device(server, "rn.evans", "vm-nurse", "nurse")
        val fox = device(server, "dr.fox", "vm-fox", "physician")
        val task = nurse.openTask(consult("Bed 41 · V.M.", "urgent")).taskId
        nurse.statusUpdates().use { it.within { s -> s.synced } }

        // The physician's worklist, by role: the new consult is there, and nothing is wrong.
        val worklist = WorklistModel(fox)
        worklist.scope = Scope.MY_ROLES
        eventually("the consult is on the physician's list") { worklist.load().items.any { it.id == task } }
        val state = worklist.load()
        check(state.error == null && !state.banner.offline) { "state: $state" }
        check(worklist.acknowledge(task) == null) { "acknowledging from the list" }

        // The nurse may not: the list says why.
        val nurseList = WorklistModel(nurse)
        check(nurseList.acknowledge(task)?.contains("may not") == true) { "the nurse's refusal" }

        // Offline, the banner says so and the list still shows what the phone holds.
        fox.setSyncUrl("ws://127.0.0.1:9/sync")
        fox.statusUpdates().use { it.within { s -> s.connection != Connection.ONLINE } }
        val offline = worklist.load()
        check(offline.banner.offline && offline.banner.text != null) { "banner: ${offline.banner}" }
        check(offline.items.any { it.id == task }) { "offline list" }
        fox.setSyncUrl(server.syncUrl)
        fox.statusUpdates().use { it.within { s -> s.synced } }
        check(worklist.load().banner.text == null) { "back online, no banner" }

        // The completion form: its own checks first, then the rules'.
        val detail = TaskModel(fox, task)
        detail.load()
        check("complete_step" in detail.actions()) { "actions: ${detail.actions()}" }
        val form: CompletionForm = detail.form("request") ?: error("no form for the first step")
        check(!detail.complete(form) && form.errors["question"] == "Required") { "errors: ${form.errors}" }
        form.set("question", "Shortness of breath?")
        form.set("urgency", "whenever")
        check(!detail.complete(form) && form.errors["urgency"]?.startsWith("One of") == true) { "errors: ${form.errors}" }
        form.set("urgency", "urgent")
        check(detail.complete(form)) { "errors: ${form.errors}" }
        check(detail.view?.steps?.first()?.completedBy == "dr.fox") { "the step is done" }

        // A hand-off goes to someone else: offering it to oneself is refused, with the reason.
        check(detail.handOff("dr.fox", null)?.contains("someone else") == true) { "a hand-off to oneself" }

        for (client in listOf(nurse, fox)) {
            client.shutdown()
            client.close()
        }
        println("android view models: all checks passed")
    }
}
