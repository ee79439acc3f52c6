// Four worker threads each sum a quarter of 0..1e6 with the locally installed sumlib.
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const { rangeSum } = require('sumlib');

if (isMainThread) {
  const N = 1000000, parts = 4;
  const jobs = [];
  for (let i = 0; i < parts; i++) {
    jobs.push(new Promise((resolve, reject) => {
      const w = new Worker(__filename, { workerData: { from: (i * N) / parts, to: ((i + 1) * N) / parts } });
      w.on('message', resolve);
      w.on('error', reject);
    }));
  }
  Promise.all(jobs).then((sums) => {
    console.log(`workers: ${sums.length}, sum: ${sums.reduce((a, b) => a + b, 0)}`);
  });
} else {
  parentPort.postMessage(rangeSum(workerData.from, workerData.to));
}
