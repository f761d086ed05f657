#!/usr/bin/env python3
"""Tokens/s and peak GPU memory of qlora-run against transformers + PEFT +
bitsandbytes, one training step at a time, in the same run.

    python3 bench/step/measure.py [--mode all|ours|hf] [--stage .bench-step]
        [--steps 7] [--warmup 2] [--budget-s 560] [--out DIR]

bench/step/run.sh calls this on the GPU machine. For each preset staged by
bench/step/prepare.sh it runs, one process at a time, qlora-run on the
preset's train.bin and bench/step/hf_baseline.py on the same shapes, both on
the same tokens for --steps steps, and prints:

  - tokens/s: the median over the steps after the first --warmup, as each
    side reports it (batch x seq tokens over the step's wall time);
  - peak GPU memory: the most memory.used that nvidia-smi reported while the
    process ran, less what it reported idle just before; sampled every
    100 ms for both sides alike, so it counts the CUDA context, the
    allocator's cache and the setup as well as the step itself. Next to it
    what each side says of itself: qlora-run's measured peak of its arena,
    torch.cuda.max_memory_reserved for the baseline;
  - the ratios ours/HF (speed above 1 and memory below 1 favour qlora-run).

The manifest's `variants` (e.g. nf4-dequantize: the preset compiled with
`qloracc --nf4-gemm dequantize`, staged as <preset>.nf4-dequantize.train.bin)
run after every comparison with the baseline, with the time those leave,
and get rows of their own against the same baseline numbers.

Standard library only; nothing asserts a timing. Writes step.md (the tables),
step.json (every number), raw.log (every process's output) and memory.csv
(the samples) to --out.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

GIB = 1 << 30
MIB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))


class MemorySampler:
    """nvidia-smi's device-wide memory.used and its per-process rows, every
    100 ms, from two streaming nvidia-smi processes (polled when -lms does
    not stream)."""

    QUERIES = {"gpu": ["--query-gpu=memory.used"],
               "apps": ["--query-compute-apps=pid,used_memory"]}

    def __init__(self, interval_ms=100):
        self.interval_ms = interval_ms
        self.samples = {"gpu": [], "apps": []}  # (monotonic s, fields...)
        self.procs = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(kind,),
                                         daemon=True) for kind in self.QUERIES]
        for thread in self.threads:
            thread.start()

    def _command(self, kind, stream):
        command = ["nvidia-smi", *self.QUERIES[kind],
                   "--format=csv,noheader,nounits"]
        return command + ["-lms", str(self.interval_ms)] if stream else command

    def _record(self, kind, line):
        fields = [f.strip() for f in line.split(",")]
        try:
            values = [int(float(f)) for f in fields]
        except ValueError:
            return
        self.samples[kind].append((time.monotonic(), *values))

    def _run(self, kind):
        try:
            proc = subprocess.Popen(self._command(kind, True), text=True,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
        except OSError:
            return  # no nvidia-smi: no samples
        self.procs.append(proc)
        started = time.monotonic()
        for line in proc.stdout:
            if self.stop.is_set():
                break
            self._record(kind, line)
        proc.wait()
        if self.stop.is_set() or time.monotonic() - started > 5:
            return
        while not self.stop.wait(self.interval_ms / 1000):  # no -lms: poll
            out = subprocess.run(self._command(kind, False), text=True,
                                 capture_output=True)
            for line in out.stdout.splitlines():
                self._record(kind, line)

    def close(self):
        self.stop.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()

    def between(self, kind, start, end):
        return [s for s in self.samples[kind] if start <= s[0] <= end]

    def peak(self, start, end):
        """(peak over idle in bytes, idle bytes, the largest per-process row
        in bytes) for a process that ran from start to end."""
        idle = [s[1] for s in self.between("gpu", start - 1.5, start)]
        busy = [s[1] for s in self.between("gpu", start, end + 0.2)]
        apps = [s[2] for s in self.between("apps", start, end + 0.2)
                if len(s) >= 3]
        if not busy:
            return None, None, max(apps) * MIB if apps else None
        base = min(idle) if idle else min(busy)
        return ((max(busy) - base) * MIB, base * MIB,
                max(apps) * MIB if apps else None)


def parse_size(text):
    number, unit = re.match(r"([0-9.]+)\s*([KMGT]?i?B)", text.strip()).groups()
    scale = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
             "TiB": 1 << 40}[unit]
    return float(number) * scale


def json_lines(path):
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows


def run_process(command, log_path, timeout, env=None):
    """Runs command with its output in log_path; returns (status, start,
    end) with monotonic times."""
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        start = time.monotonic()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            status = "ok" if rc == 0 else f"exit {rc}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"timeout {timeout:.0f} s"
        end = time.monotonic()
    return status, start, end


def summarize_steps(rows, warmup):
    steps = [r for r in rows if "step" in r and "tokens_per_s" in r]
    timed = [r["tokens_per_s"] for r in steps if r["step"] > warmup]
    losses = [r.get("loss") for r in steps]
    return {
        "steps": len(steps),
        "timed_steps": len(timed),
        "tokens_per_s": statistics.median(timed) if timed else None,
        "tokens_per_s_all": [r["tokens_per_s"] for r in steps],
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
    }


def run_ours(args, program, work, timeout):
    """qlora-run on <program>.train.bin: a preset, or preset.variant."""
    metrics = os.path.join(work, f"ours-{program}.jsonl")
    log = os.path.join(work, f"ours-{program}.log")
    env = dict(os.environ)
    lib = os.path.abspath(os.path.join(args.stage, "lib"))
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"]
                                    if env.get("LD_LIBRARY_PATH") else "")
    command = [os.path.join(args.stage, "qlora-run"),
               os.path.join(args.stage, f"{program}.train.bin"),
               "--device", args.device, "--data",
               os.path.join(args.stage, "tokens.u16"), "--steps",
               str(args.steps), "--metrics", metrics, "--no-progress",
               "--memory-report"]
    status, start, end = run_process(command, log, timeout, env)
    rows = json_lines(metrics)
    result = summarize_steps(rows, args.warmup)
    peaks = [r["measured_peak_bytes"] for r in rows
             if r.get("measured_peak_bytes")]
    result["self_peak_bytes"] = max(peaks) if peaks else None
    with open(log, errors="replace") as f:
        text = f.read()
    planned = re.search(r"^peak:\s*(.+)$", text, re.M)
    result["planned_peak_bytes"] = parse_size(planned.group(1)) if planned else None
    result["self_peak_name"] = "qlora-run measured arena peak"
    result["wall_s"] = end - start
    return status, start, end, result, [log, metrics]


def run_hf(args, preset, seq, work, timeout):
    log = os.path.join(work, f"hf-{preset}.log")
    command = [sys.executable, os.path.join(HERE, "hf_baseline.py"),
               "--preset", preset, "--device", args.device, "--steps",
               str(args.steps), "--seq", str(seq), "--data",
               os.path.join(args.hf_stage, "tokens.u16")]
    status, start, end = run_process(command, log, timeout)
    rows = json_lines(log)
    result = summarize_steps(rows, args.warmup)
    summary = next((r["summary"] for r in rows if "summary" in r), {})
    setup = next((r for r in rows if "setup_s" in r and "preset" in r), {})
    result["self_peak_bytes"] = summary.get("max_memory_reserved_bytes")
    result["allocated_peak_bytes"] = summary.get("max_memory_allocated_bytes")
    result["self_peak_name"] = "torch.cuda.max_memory_reserved"
    result["setup"] = setup
    result["wall_s"] = end - start
    return status, start, end, result, [log]


def read_manifest(*stages):
    manifest = {}
    for stage in stages:
        path = os.path.join(stage, "manifest.txt")
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    manifest.setdefault(key.strip(), value.strip())
    return manifest


def fmt(value, spec, scale=1):
    return "n/a" if value is None else format(value / scale, spec)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def render(results, presets, variants, args, gpu):
    lines = [f"bench/step on {gpu or 'an unknown GPU'}: batch 1, seq "
             f"{args.seq}, LoRA r=64 all-linear, per-layer remat; "
             f"{args.steps} steps, medians over the last "
             f"{args.steps - args.warmup}", "",
             "| model | ours tokens/s | HF tokens/s | speed ours/HF "
             "| ours peak GiB | HF peak GiB | memory ours/HF |",
             "|---|---|---|---|---|---|---|"]
    rows = [(preset, "ours", preset) for preset in presets] + [
        (f"{preset}, {variant}", f"ours {variant}", preset)
        for variant in variants for preset in presets]
    for label, side, preset in rows:
        ours = results.get((side, preset), {})
        hf = results.get(("hf", preset), {})
        lines.append(
            f"| {label} | {fmt(ours.get('tokens_per_s'), '.0f')} "
            f"| {fmt(hf.get('tokens_per_s'), '.0f')} "
            f"| {fmt(ratio(ours.get('tokens_per_s'), hf.get('tokens_per_s')), '.2f')} "
            f"| {fmt(ours.get('smi_peak_bytes'), '.2f', GIB)} "
            f"| {fmt(hf.get('smi_peak_bytes'), '.2f', GIB)} "
            f"| {fmt(ratio(ours.get('smi_peak_bytes'), hf.get('smi_peak_bytes')), '.2f')} |")
    lines += ["", "peak = nvidia-smi memory.used while the process ran, less "
              "idle, sampled every 100 ms (context, cache and setup "
              "included); self-reported: qlora-run's measured arena peak "
              "(planned in brackets), torch.cuda.max_memory_reserved "
              "(max_memory_allocated in brackets).", "",
              "| run | status | steps | tokens/s per step | loss first -> last "
              "| self-reported peak GiB | per-process row GiB | wall s |",
              "|---|---|---|---|---|---|---|---|"]
    for preset in presets:
        for side in ["ours", "hf"] + [f"ours {v}" for v in variants]:
            r = results.get((side, preset))
            if r is None:
                continue
            other = r.get("planned_peak_bytes", r.get("allocated_peak_bytes"))
            per_step = " ".join(f"{t:.0f}" for t in r.get("tokens_per_s_all", []))
            lines.append(
                f"| {side} {preset} | {r['status']} | {r.get('steps', 0)} "
                f"| {per_step or 'n/a'} "
                f"| {fmt(r.get('loss_first'), '.3f')} -> {fmt(r.get('loss_last'), '.3f')} "
                f"| {fmt(r.get('self_peak_bytes'), '.2f', GIB)} "
                f"({fmt(other, '.2f', GIB)}) "
                f"| {fmt(r.get('smi_process_bytes'), '.2f', GIB)} "
                f"| {fmt(r.get('wall_s'), '.1f')} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["all", "ours", "hf"], default="all")
    parser.add_argument("--stage", default=".bench-step")
    parser.add_argument("--hf-stage", default=None,
                        help="where the wheel and tokens are (default --stage)")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=560)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.hf_stage = args.hf_stage or args.stage
    deadline = time.monotonic() + args.budget_s
    out = args.out or os.path.join(args.stage, "results")
    os.makedirs(out, exist_ok=True)
    work = os.path.join("/tmp", f"bench-step-{os.getpid()}")
    os.makedirs(work, exist_ok=True)

    manifest = read_manifest(args.stage, args.hf_stage)
    presets = manifest.get("presets", "").split()
    if not presets:
        sys.exit("bench/step: no manifest.txt with the presets in "
                 f"{args.stage}; run bench/step/prepare.sh")
    args.seq = int(re.match(r"\d+", manifest.get("seq", "2048")).group(0))
    variants = manifest.get("variants", "").split() if args.mode != "hf" else []
    sides = ["ours", "hf"] if args.mode == "all" else [args.mode]
    gpu = "the CPU"
    if args.device != "cpu":
        try:
            gpu = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version",
                 "--format=csv,noheader"], capture_output=True,
                text=True).stdout.strip()
        except OSError:
            gpu = None

    sampler = MemorySampler()
    time.sleep(1.5)  # idle samples before the first process
    results, logs = {}, []
    runs = [(preset, side) for preset in presets for side in sides]
    compared = len(runs)
    runs += [(preset, f"ours {variant}") for variant in variants
             for preset in presets]
    for index, (preset, side) in enumerate(runs):
        left = deadline - time.monotonic()
        if left < 30:
            results[(side, preset)] = {"status": "skipped: out of time"}
            continue
        # A fair share of what is left, with slack, so that one hung or
        # slow run cannot take the time of those after it. The variants
        # share what the comparison leaves.
        after = (compared if index < compared else len(runs)) - index
        timeout = min(left - 5, 1.5 * left / after)
        print(f"bench/step: {side} {preset} ({left:.0f} s left, "
              f"at most {timeout:.0f} s)", flush=True)
        if side.startswith("ours"):
            variant = side.partition(" ")[2]
            status, start, end, result, files = run_ours(
                args, f"{preset}.{variant}" if variant else preset, work,
                timeout)
        else:
            status, start, end, result, files = run_hf(
                args, preset, args.seq, work, timeout)
        result["status"] = status
        peak, idle, process = sampler.peak(start, end)
        result.update(smi_peak_bytes=peak, smi_idle_bytes=idle,
                      smi_process_bytes=process)
        results[(side, preset)] = result
        logs += files
        print(f"bench/step: {side} {preset}: {status}, "
              f"{fmt(result.get('tokens_per_s'), '.0f')} tokens/s, "
              f"peak {fmt(peak, '.2f', GIB)} GiB", flush=True)
        if status != "ok":
            with open(files[0], errors="replace") as f:
                print("".join(f.readlines()[-15:]), flush=True)
        write_outputs(out, results, presets, variants, args, gpu, logs,
                      sampler)
        time.sleep(1.5)  # let the memory go back to idle
    sampler.close()
    table = write_outputs(out, results, presets, variants, args, gpu, logs,
                          sampler)
    print()
    print(table, end="")
    print(f"\nbench/step: results in {out}")
    return 0


def write_outputs(out, results, presets, variants, args, gpu, logs, sampler):
    table = render(results, presets, variants, args, gpu)
    with open(os.path.join(out, "step.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out, "step.json"), "w") as f:
        json.dump({"gpu": gpu, "seq": args.seq, "steps": args.steps,
                   "warmup": args.warmup,
                   "runs": {f"{side} {preset}": r
                            for (side, preset), r in results.items()}},
                  f, indent=1)
    with open(os.path.join(out, "raw.log"), "w") as raw:
        for path in logs:
            raw.write(f"===== {os.path.basename(path)}\n")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    raw.write(f.read())
    with open(os.path.join(out, "memory.csv"), "w") as f:
        # gpu rows: t, memory.used MiB; apps rows: t, pid, used MiB
        f.write("kind,t_s,values\n")
        for kind, samples in sampler.samples.items():
            for sample in list(samples):
                f.write(f"{kind},{sample[0]:.3f},"
                        + ",".join(str(v) for v in sample[1:]) + "\n")
    return table


if __name__ == "__main__":
    sys.exit(main())
