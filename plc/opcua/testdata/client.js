// node-opcua client driven by plc/opcua's tests: an independent OPC UA
// stack (https://github.com/node-opcua/node-opcua) against the Go server.
// Argument: one JSON object
//   {endpoint, ns, securityMode: "None"|"Sign"|"SignAndEncrypt",
//    securityPolicy: "None"|"Basic256Sha256", user, password, pki,
//    expect: number of results to wait for after "subscribed" (0: none),
//    timeoutMs}
// Output: one JSON object per line ({event: ...}); exit code 0 unless the
// script itself failed.
"use strict";
const {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, AttributeIds,
  TimestampsToReturn, ClientSubscription, ClientMonitoredItem, UserTokenType, NodeClass,
  DataType, BrowseDirection,
} = require("node-opcua-client");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");

const args = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

async function browseTree(session, nodeId, path, acc, depth) {
  if (depth > 6) return;
  const res = await session.browse({
    nodeId, browseDirection: BrowseDirection.Forward, includeSubtypes: true,
    referenceTypeId: "HierarchicalReferences", nodeClassMask: 0, resultMask: 63,
  });
  for (const ref of res.references || []) {
    const name = ref.browseName.name;
    const p = path ? path + "." + name : name;
    acc.push({ path: p, nodeId: ref.nodeId.toString(), nodeClass: NodeClass[ref.nodeClass] });
    if (ref.nodeClass === NodeClass.Object) {
      await browseTree(session, ref.nodeId, p, acc, depth + 1);
    }
  }
}

async function main() {
  const certificateManager = new OPCUACertificateManager({
    rootFolder: args.pki, automaticallyAcceptUnknownCertificate: true,
  });
  const client = OPCUAClient.create({
    applicationName: "segad-opcua-test",
    endpointMustExist: false,
    securityMode: MessageSecurityMode[args.securityMode || "None"],
    securityPolicy: SecurityPolicy[args.securityPolicy || "None"],
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
    keepSessionAlive: false,
    requestedSessionTimeout: 60000,
    clientCertificateManager: certificateManager,
  });
  client.on("backoff", () => out({ event: "backoff" }));
  await client.connect(args.endpoint);
  out({ event: "connected" });
  const identity = args.user
    ? { type: UserTokenType.UserName, userName: args.user, password: args.password }
    : { type: UserTokenType.Anonymous };
  let session;
  try {
    session = await client.createSession(identity);
  } catch (err) {
    out({ event: "session_refused", error: String(err.message).split("\n")[0] });
    await client.disconnect();
    return;
  }
  out({ event: "session" });

  const nsArray = await session.readNamespaceArray();
  const ns = nsArray.indexOf(args.ns);
  out({ event: "namespaces", namespaces: nsArray, index: ns });

  // Browse from Objects down to every variable of the vision tree.
  const nodes = [];
  await browseTree(session, "ns=0;i=85", "", nodes, 0);
  const mine = nodes.filter((n) => n.nodeId.startsWith("ns=" + ns + ";"));
  out({ event: "browse", nodes: mine });

  // Read value, data type and access level of every variable.
  const vars = mine.filter((n) => n.nodeClass === "Variable");
  const toRead = [];
  for (const v of vars) {
    toRead.push({ nodeId: v.nodeId, attributeId: AttributeIds.Value });
    toRead.push({ nodeId: v.nodeId, attributeId: AttributeIds.DataType });
    toRead.push({ nodeId: v.nodeId, attributeId: AttributeIds.AccessLevel });
  }
  const dvs = await session.read(toRead);
  const read = vars.map((v, i) => {
    const val = dvs[3 * i];
    let value = val.value.value;
    if (typeof value === "bigint") value = value.toString();
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === "number") {
      // node-opcua gives (U)Int64 as [high, low]
      value = (BigInt(value[0] >>> 0) * 4294967296n + BigInt(value[1] >>> 0)).toString();
    }
    if (value instanceof Date) value = value.toISOString();
    return {
      path: v.path, nodeId: v.nodeId, status: val.statusCode.name,
      dataType: DataType[val.value.dataType], declaredType: dvs[3 * i + 1].value.value && dvs[3 * i + 1].value.value.toString(),
      accessLevel: dvs[3 * i + 2].value.value, value,
    };
  });
  out({ event: "read", variables: read });

  // A write must be refused.
  const resultId = vars.find((v) => v.path.endsWith("Result.ResultId"));
  const ws = await session.write({
    nodeId: resultId.nodeId, attributeId: AttributeIds.Value,
    value: { value: { dataType: DataType.String, value: "forged" } },
  });
  out({ event: "write", status: ws.name });

  // A method call: the stack does not serve methods.
  try {
    const cr = await session.call({ objectId: "ns=0;i=2253", methodId: "ns=0;i=11492", inputArguments: [{ dataType: DataType.UInt32, value: 1 }] });
    out({ event: "call", status: cr.statusCode.name });
  } catch (err) {
    out({ event: "call", status: String(err.message).split("\n")[0] });
  }

  if (args.expect > 0) {
    const sub = ClientSubscription.create(session, {
      requestedPublishingInterval: 50, requestedLifetimeCount: 600, requestedMaxKeepAliveCount: 10,
      maxNotificationsPerPublish: 0, publishingEnabled: true, priority: 1,
    });
    const keys = ["Result.ResultCounter", "Result.ResultId", "Result.PartId", "Result.Verdict", "Result.Score"];
    let counter = 0;
    let initial = 0;
    const done = new Promise((resolve) => {
      for (const k of keys) {
        const v = vars.find((x) => x.path.endsWith(k));
        const mi = ClientMonitoredItem.create(sub, { nodeId: v.nodeId, attributeId: AttributeIds.Value },
          { samplingInterval: 0, discardOldest: true, queueSize: 100 }, TimestampsToReturn.Both);
        mi.on("changed", (dv) => {
          let value = dv.value.value;
          if (Array.isArray(value) && value.length === 2) value = Number(BigInt(value[0] >>> 0) * 4294967296n + BigInt(value[1] >>> 0));
          if (typeof value === "bigint") value = Number(value);
          if (typeof value === "number" && Number.isNaN(value)) value = "NaN";
          // at: the wall time the change arrived (ms since the epoch, sub-ms)
          out({ event: "change", key: k, value, status: dv.statusCode.name, at: performance.timeOrigin + performance.now() });
          if (k === "Result.ResultCounter") {
            if (initial++ === 0) out({ event: "subscribed" });
            counter = value;
            if (counter >= args.expect) resolve();
          }
        });
      }
    });
    const timer = new Promise((resolve) => setTimeout(() => resolve("timeout"), args.timeoutMs || 30000));
    const r = await Promise.race([done, timer]);
    out({ event: r === "timeout" ? "timeout" : "done", counter });
    await sub.terminate();
  }
  await session.close();
  await client.disconnect();
  out({ event: "closed" });
}

main().then(() => process.exit(0), (err) => {
  out({ event: "error", error: String(err && err.message || err).split("\n")[0] });
  process.exit(0);
});
