// The Compose screens: thin renderings of the view-model states (../model), which hold all the
// behaviour and are tested on the JVM. Not compiled on the machines this project is built on
// (no Android SDK there).
package health.baton.example.ui

import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Surface
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import health.baton.example.model.CompletionForm
import health.baton.example.model.SyncBanner
import health.baton.example.model.TaskModel
import health.baton.example.model.WorklistModel
import health.baton.ffi.TaskView
import health.baton.ffi.WorkItem
import kotlinx.coroutines.launch

@Composable
fun Banner(banner: SyncBanner) {
    val text = banner.text ?: return
    Surface(color = MaterialTheme.colorScheme.errorContainer) {
        Text(text, Modifier.padding(12.dp))
    }
}

@Composable
fun WorklistScreen(state: WorklistModel.State, onOpen: (WorkItem) -> Unit, onAcknowledge: (WorkItem) -> Unit) {
    Column {
        Banner(state.banner)
        state.error?.let { Text(it, color = MaterialTheme.colorScheme.error) }
        LazyColumn {
            items(state.items, key = { it.id }) { item ->
                Row(Modifier.clickable { onOpen(item) }.padding(12.dp)) {
                    Column(Modifier.weight(1f)) {
                        Text("${item.label} · ${item.name}", style = MaterialTheme.typography.titleMedium)
                        val flags = listOfNotNull(
                            "OVERDUE".takeIf { item.overdue },
                            "Escalated to ${item.escalatedTo}".takeIf { item.escalationLevel > 0u },
                            "Waiting".takeIf { item.waiting },
                            "Offered to you".takeIf { item.offeredToMe },
                        )
                        Text("${item.acuity} · ${item.owner ?: "unowned"} · ${flags.joinToString(" · ")}")
                    }
                    if (item.mine && !item.acknowledged) {
                        Button(onClick = { onAcknowledge(item) }) { Text("Acknowledge") }
                    }
                }
            }
        }
    }
}

@Composable
fun TaskScreen(model: TaskModel, view: TaskView, banner: SyncBanner) {
    val scope = rememberCoroutineScope()
    var error by remember { mutableStateOf<String?>(null) }
    var form by remember { mutableStateOf<CompletionForm?>(null) }
    Column(Modifier.padding(12.dp)) {
        Banner(banner)
        Text("${view.name} · ${view.label}", style = MaterialTheme.typography.titleLarge)
        Text("${view.status} · owner ${view.owner ?: "nobody"} · acuity ${view.acuity}")
        error?.let { Text(it, color = MaterialTheme.colorScheme.error) }
        if ("acknowledge" in model.actions()) {
            Button(onClick = { scope.launch { error = model.acknowledge() } }) { Text("Acknowledge") }
        }
        for (step in view.steps) {
            Row {
                Text("${step.name} (${step.status})", Modifier.weight(1f))
                if (view.may.any { it.action == "complete_step" && it.step == step.id }) {
                    Button(onClick = { form = model.form(step.id) }) { Text("Complete") }
                }
            }
        }
        form?.let { f ->
            for (field in f.fields) {
                var text by remember(field.name) { mutableStateOf("") }
                OutlinedTextField(
                    value = text,
                    onValueChange = { text = it; f.set(field.name, it) },
                    label = { Text(field.name + if (field.required) " *" else "") },
                    isError = f.errors.containsKey(field.name),
                    supportingText = { f.errors[field.name]?.let { Text(it) } },
                )
            }
            Button(onClick = { scope.launch { if (model.complete(f)) form = null } }) { Text("Save") }
        }
        Text("History", style = MaterialTheme.typography.titleMedium)
        for (h in view.history) Text("${h.kind} · ${h.user} (${h.role}) · ${h.outcome}")
        for (c in view.conflicts) Text("Conflict: ${c.kind} by ${c.user}: ${c.reason}")
    }
}
