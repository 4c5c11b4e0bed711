"""Fleet bench: M simulated devices publish through a private Mosquitto from one process.

    python -m bench.fleet [--devices 1000] [--seconds 20] [--speed 1] [--interval-s 10] [--batch 1]

Prints one JSON line: connect time, readings and messages published and acknowledged, what a
subscriber received, and the CPU the fleet process used (one thread drives every client).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fieldops.clock import Clock
from fieldops.runtime.mosquitto import LocalMosquitto, broker_user, share_with_broker
from fieldops.runtime.postgres import free_port
from ingest.broker_config import hash_password, write_broker_files
from simulators.fleet import Fleet, FleetConfig, FleetDevice
from simulators.models import MODEL_SPECS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--interval-s", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    codes = list(MODEL_SPECS)
    devices = [FleetDevice(i + 1, f"{MODEL_SPECS[codes[i % 3]].serial_prefix}-{i + 1:06d}", codes[i % 3])
               for i in range(args.devices)]
    passwords = {d.serial: f"pw-{d.serial}" for d in devices}
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        share_with_broker(directory)
        hashes = {s: hash_password(p) for s, p in passwords.items()} | {"bench": hash_password("bench")}
        config = write_broker_files(directory, port=port, hashes=hashes, service_users={"bench": "read"},
                                    run_as=broker_user(), log_to_file=True)
        for path in [directory, directory / "data", *directory.iterdir()]:
            share_with_broker(path)
        broker = LocalMosquitto(config, port).start()
        received = [0]
        lock = threading.Lock()

        def on_message(client, userdata, msg) -> None:
            with lock:
                received[0] += 1

        sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        sub.username_pw_set("bench", "bench")
        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe("fieldops/v1/devices/+/telemetry", qos=1)
        sub.loop_start()
        try:
            clock = Clock(speed=args.speed, real_anchor=datetime.now(UTC), sim_anchor=datetime.now(UTC))
            fleet = Fleet(devices, passwords, clock,
                          FleetConfig(port=port, interval_s=args.interval_s, batch=args.batch))
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            fleet.connect(timeout_s=120)
            connect_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            stats = fleet.run(args.seconds)
            run_s = time.perf_counter() - t1
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            fleet.close()
            time.sleep(1.0)
        finally:
            sub.loop_stop()
            sub.disconnect()
            broker.stop()
    cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    print(json.dumps({
        "bench": "fleet", "devices": args.devices, "speed": args.speed, "interval_s": args.interval_s,
        "batch": args.batch, "connect_s": round(connect_s, 2), "run_s": round(run_s, 2),
        "readings": stats.readings, "messages": stats.messages, "acked": stats.acked,
        "received": received[0], "readings_per_s": round(stats.readings / run_s),
        "expected_readings_per_s": round(args.devices * args.speed / args.interval_s),
        "cpu_share": round(cpu_s / (connect_s + run_s), 2),
    }))


if __name__ == "__main__":
    main()
