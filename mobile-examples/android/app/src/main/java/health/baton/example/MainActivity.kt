// The app's entry: opens the client with a Keystore-held key (docs/mobile.md), then shows the
// worklist and task screens. Not compiled on the machines this project is built on.
package health.baton.example

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.setValue
import health.baton.example.model.SyncBanner
import health.baton.example.model.TaskModel
import health.baton.example.model.WorklistModel
import health.baton.example.model.banners
import health.baton.example.ui.TaskScreen
import health.baton.example.ui.WorklistScreen
import health.baton.ffi.BatonClient
import health.baton.ffi.Settings
import health.baton.ffi.TaskView
import java.io.File
import kotlinx.coroutines.launch

class MainActivity : ComponentActivity() {
    private lateinit var client: BatonClient

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        client = BatonClient.open(Settings(
            syncUrl = BuildConfig.BATON_SYNC_URL,
            storePath = File(noBackupFilesDir, "baton.store").path,
            storeKey = StoreKey.load(this),
        ))
        val worklist = WorklistModel(client)
        setContent {
            var state by remember { mutableStateOf<WorklistModel.State?>(null) }
            var banner by remember { mutableStateOf(SyncBanner.of(client.status())) }
            var open by remember { mutableStateOf<Pair<TaskModel, TaskView>?>(null) }
            val scope = rememberCoroutineScope()
            LaunchedEffect(Unit) { client.banners { banner = it } }
            LaunchedEffect(banner) { state = worklist.load() }
            val task = open
            if (task != null) {
                TaskScreen(task.first, task.second, banner)
            } else {
                state?.let { s ->
                    WorklistScreen(
                        s,
                        onOpen = { item ->
                            scope.launch {
                                val model = TaskModel(client, item.id)
                                open = model to model.load()
                            }
                        },
                        onAcknowledge = { item -> scope.launch { worklist.acknowledge(item.id) } },
                    )
                }
            }
        }
    }

    override fun onDestroy() {
        client.close()
        super.onDestroy()
    }
}
