// kafkajs produces keyed records with each codec it ships (none, gzip),
// then a consumer group on the other agent reads them back.
// Usage: node kafkajs_roundtrip.js BOOTSTRAP_A BOOTSTRAP_B TOPIC RECORDS
// Prints one JSON line: {"sent": [[key, value]...], "received": [[partition, offset, key, value]...]}.
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

const [bsA, bsB, topic, n] = process.argv.slice(2);
const records = Number(n);
const KEYS = 97;

function batch(codec) {
  const out = [];
  for (let i = 0; i < records; i++) {
    const key = `key-${i % KEYS}`;
    const seq = String(Math.floor(i / KEYS)).padStart(6, '0');
    out.push([key, `${codec}|${key}|${seq}|` + 'x'.repeat(i % 64)]);
  }
  return out;
}

async function main() {
  const producer = new Kafka({ clientId: 'silt-test', brokers: [bsA], logLevel: logLevel.WARN })
    .producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const sent = [];
  for (const [name, codec] of [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]) {
    const b = batch(name);
    for (let i = 0; i < b.length; i += 500) {
      await producer.send({
        topic, acks: -1, compression: codec,
        messages: b.slice(i, i + 500).map(([key, value]) => ({ key, value })),
      });
    }
    sent.push(...b);
  }
  await producer.disconnect();

  const consumer = new Kafka({ clientId: 'silt-test', brokers: [bsB], logLevel: logLevel.WARN })
    .consumer({ groupId: 'kafkajs-readback', sessionTimeout: 10000, rebalanceTimeout: 10000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const received = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stalled at ${received.length}`)), 120000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        received.push([partition, message.offset, message.key.toString(), message.value.toString()]);
        if (received.length >= sent.length) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ sent, received }));
}

main().catch((e) => { console.error(e); process.exit(1); });
