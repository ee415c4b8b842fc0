// lines.mjs writes each argument as one JSON line, then a line that only
// ends when stdin closes, so the test decides when it is stopped.
for (const arg of process.argv.slice(2)) {
  process.stdout.write(JSON.stringify({ arg }) + "\n");
}
process.stderr.write("lines.mjs: waiting\n");
process.stdin.resume();
