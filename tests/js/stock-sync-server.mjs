// The stock automerge-repo sync server, as `@automerge/automerge-repo-sync-server` runs it
// (NodeWSServerAdapter, NodeFSStorageAdapter, sharePolicy false, peer id
// `storage-server-<hostname>`), on the same automerge-repo version the interop tests use.
// Benchmarks run it beside Baton. PORT and DATA_DIR as for the published server.
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import { WebSocketServer } from "ws";
import { Repo } from "@automerge/automerge-repo";
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket";
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs";

const dir = process.env.DATA_DIR ?? ".amrg";
fs.mkdirSync(dir, { recursive: true });
const port = parseInt(process.env.PORT ?? "3030", 10);

const wss = new WebSocketServer({ noServer: true });
new Repo({
  network: [new NodeWSServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dir),
  peerId: `storage-server-${os.hostname()}`,
  sharePolicy: async () => false,
});
const server = http.createServer((_, res) => res.end("ok"));
server.on("upgrade", (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit("connection", ws, request));
});
server.listen(port, "127.0.0.1", () => console.log(`Listening on port ${port}`));
