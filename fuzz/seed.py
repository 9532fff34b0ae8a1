#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target, from real inputs of the repository (golden vectors, etc/, session lines of the sources), into corpus/<target>/seed-*.

Run once by hand or by run.sh when a target's corpus is empty; run.sh's merge keeps only the
seeds that add coverage. Input layouts are those of fuzz/targets/src/<target>.rs.
"""
import glob
import hashlib
import json
import os
import re
import struct
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GOLDEN = os.path.join(ROOT, "broker", "tests", "golden")


def jsonl(name):
    with open(os.path.join(GOLDEN, name), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def write(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    directory = os.path.join(HERE, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(directory, name), "wb") as handle:
        handle.write(data)


CONTENT_TYPES = {None: 0, "application/x-www-form-urlencoded": 1, "text/plain": 3}


def http_params():
    for name in glob.glob(os.path.join(GOLDEN, "http_*.jsonl")):
        for case in jsonl(os.path.basename(name)):
            request = case.get("request") or {}
            query = request.get("query")
            body = request.get("raw_body")
            form = request.get("form")
            content_type = None
            for key, value in (request.get("headers") or {}).items():
                if key.lower() == "content-type":
                    content_type = value
            if isinstance(query, (dict, list)):
                query = urllib.parse.urlencode(query, doseq=True)
            if body is None and form:
                body = urllib.parse.urlencode(form, doseq=True)
                content_type = content_type or "application/x-www-form-urlencoded"
            flags = (1 if query is not None else 0) | (
                CONTENT_TYPES.get(content_type, 2 if content_type else 0) << 1
            )
            write("http_params", bytes([flags]) + (query or "").encode() + b"\0" + (body or "").encode())


def config():
    paths = [os.path.join(ROOT, "etc", "x2gobroker.conf"), os.path.join(ROOT, "etc", "defaults.conf")]
    paths += glob.glob(os.path.join(GOLDEN, "configs", "*.conf"))
    for path in paths:
        write("config", read(path))


def profiles():
    paths = [os.path.join(ROOT, "etc", "x2gobroker-sessionprofiles.conf")]
    paths += glob.glob(os.path.join(GOLDEN, "configs", "*.ini"))
    for path in paths:
        write("profiles", read(path))


def loggers():
    write("loggers", read(os.path.join(ROOT, "etc", "x2gobroker-loggers.conf")))
    write("loggers", "%(asctime)s - %(name)s - %(levelname)s - %(message)s\n\n")
    write("loggers", "[%(levelname)-7s] %(filename)s:%(lineno)d %(levelno)s %%%(message)s\n%H:%M\n")
    write("loggers", "%(asctime)s %(name)8s|%(process)d %(msecs)03d %(created)f %(threadName)s\n%d.%m. %H:%M\n")


SESSION_LINE = re.compile(r"\d+\|[^|\"\n]+\|\d+\|[^|\"\n]*\|[A-Z]\|[^\"\n]*?\|-?\d+(?:\|-?\d+\|-?\d+)?(?=[\"\\\n])")


def session_lines():
    lines = set()
    sources = glob.glob(os.path.join(ROOT, "**", "*.rs"), recursive=True)
    sources += glob.glob(os.path.join(GOLDEN, "*.jsonl"))
    for path in sources:
        if "/target" in path:
            continue
        text = read(path).decode("utf-8", "replace")
        for match in SESSION_LINE.finditer(text):
            if match.group(0).count("|") in (13, 15):
                lines.add(match.group(0))
    lines = sorted(lines)
    for line in lines[:40]:
        write("session_lines", line + "\n")
    write("session_lines", "\n".join(lines[:6]) + "\n")


def agent_answer():
    for case in jsonl("agent_cli.jsonl"):
        write("agent_answer", (case.get("stdout") or "") + "\0" + (case.get("stderr") or ""))
    for case in jsonl("api_agent_transport.jsonl"):
        stdout = case.get("fake_remote_stdout") or case.get("fake_stdout") or ""
        write("agent_answer", stdout + "\0" + (case.get("fake_remote_stderr") or ""))
    figures = struct.pack("<5q", 51, 7800, 0, 4, 2400)
    write("agent_answer", figures + b"\nOK\nloadavgXX:51\nmemAvail:7800\nmyMemAvail:0\nnumCPU:4\ntypeCPU:2400\n\0")
    write("agent_answer", "OK\nts01 3\nts02 1\n\0")
    write("agent_answer", "OK\n75:ts01\n25:ts02\n\0")


def legacy_command():
    for name in ("agent_cli.jsonl", "ssh_broker_mode.jsonl"):
        for case in jsonl(name):
            argv = case.get("argv") or []
            command = (case.get("env") or {}).get("SSH_ORIGINAL_COMMAND", "")
            write("legacy_command", "\0".join([command] + argv[1:]))
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEhQ0q3mXb8n8QH4n5V4o1P0v0rY8sM1dD7ZxBq6bV0W maja@client"
    write("legacy_command", "\0".join(["", "maja", "addauthkey", key, "%h/.x2go/authorized_keys"]))
    write("legacy_command", f"sh -c '/usr/lib/x2go/x2gobroker-agent maja delauthkey \"{key}\" \"%h/.x2go/authorized_keys\"'")
    write("legacy_command", "sh -c '/usr/lib/x2go/x2gobroker-agent maja suspendsession \"maja-50-1700000000_stDKDE_dp24\"'")
    write("legacy_command", "/usr/lib/x2go/x2gobroker-agent host$ listsessions")


def authservice():
    for index, case in enumerate(jsonl("authservice_socket.jsonl")):
        write("authservice", bytes([index]) + "".join(case["socket_writes"]).encode())


if __name__ == "__main__":
    for seeder in (http_params, config, profiles, loggers, session_lines, agent_answer, legacy_command, authservice):
        seeder()
    for target in sorted(os.listdir(os.path.join(HERE, "corpus"))):
        print(target, len(os.listdir(os.path.join(HERE, "corpus", target))))
