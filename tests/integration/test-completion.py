#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""shell/knockctl.bash against the knockctl it completes.

Runs the completion function in bash the way readline does (COMP_WORDS,
COMP_CWORD) and checks: the commands are exactly those of `knockctl --help`;
each command offers every option of its `knockctl COMMAND --help` synopsis
and the common ones; -e offers the configured endpoints; --status and
--state offer the statuses and hook states, comma lists included.
"""

import os
import re
import shutil
import subprocess
import tempfile

import knocktest

SRC = os.environ.get("KNOCK_SOURCE_DIR", ".")
COMPLETION = os.path.join(SRC, "shell/knockctl.bash")
t = knocktest.Tap()


BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


def complete(line, config_dir, with_framework=False):
    """The candidates bash offers for `line` (the cursor at its end), alone or
    under bash-completion's framework (_init_completion), as installed."""
    script = (". %s\n" % BASH_COMPLETION if with_framework else "") + r'''
source "$1"
read -ra COMP_WORDS <<<"$2"
[[ $2 == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE=$2
COMP_POINT=${#COMP_LINE}
_knockctl knockctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
'''
    env = dict(os.environ, KNOCK_CONFIG_DIR=config_dir)
    p = subprocess.run(["bash", "-c", script, "bash", COMPLETION, line], env=env,
                       capture_output=True, text=True, timeout=30)
    return set(w for w in p.stdout.split("\n") if w), p.stderr


def main():
    knockctl = knocktest.binary("knockctl")
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "endpoints"))
        for n in ("shop", "crm-eu"):
            with open(os.path.join(tmp, "endpoints", n + ".conf"), "w") as f:
                f.write("[endpoint]\n")
        env = dict(os.environ, KNOCK_CONFIG_DIR=tmp)
        helptext = subprocess.run([knockctl, "--help"], capture_output=True, text=True,
                                  env=env).stdout
        verbs = set(re.findall(r"^  ([a-z][a-z-]+)(?: |$)", helptext, re.M))
        got, err = complete("knockctl ", tmp)
        t.ok(len(verbs) >= 15 and got == verbs, "commands: exactly those of knockctl --help",
             "missing %s, extra %s %s" % (sorted(verbs - got), sorted(got - verbs), err))

        for v in sorted(verbs):
            p = subprocess.run([knockctl, v, "--help"], capture_output=True, text=True, env=env)
            want = set(re.findall(r"--[a-z][a-z-]*", p.stdout.splitlines()[0])) - {"--json"}
            want |= {"--json", "--wide", "--no-pager", "--help"}
            got, err = complete("knockctl -e shop %s --" % v, tmp)
            t.ok(p.returncode == 0 and want <= got,
                 "%s: offers its options %s" % (v, " ".join(sorted(want))),
                 "missing %s %s" % (sorted(want - got), err))

        got, _ = complete("knockctl -e ", tmp)
        t.eq(got, {"shop", "crm-eu"}, "-e offers the configured endpoints")
        got, _ = complete("knockctl --endpoint s", tmp)
        t.eq(got, {"shop"}, "--endpoint completes a prefix")
        got, _ = complete("knockctl --", tmp)
        t.ok({"--endpoint", "--json", "--no-pager", "--wide", "--version"} <= got,
             "global options", got)
        got, _ = complete("knockctl events --status fa", tmp)
        t.eq(got, {"failed"}, "--status completes a status")
        got, _ = complete("knockctl events --status received,d", tmp)
        t.eq(got, {"received,dead"}, "--status completes the last of a comma list")
        got, _ = complete("knockctl prune --status ", tmp)
        t.eq(len(got), 6, "prune --status offers the six statuses")
        got, _ = complete("knockctl hooks --state ", tmp)
        t.eq(got, {"pending", "delivered", "failed"}, "hooks --state offers the hook states")
        got, _ = complete("knockctl -e shop requeue ", tmp)
        t.eq(got, set(), "ids are not guessed")

        # zsh: no harness drives its completion system here, so the file is
        # checked for syntax (zsh -n) and against the same lists.
        zsh_file = os.path.join(SRC, "shell/_knockctl")
        with open(zsh_file) as f:
            zsh_text = f.read()
        zsh_verbs = set(re.findall(r"^\s+'([a-z][a-z-]+):", zsh_text, re.M))
        t.eq(zsh_verbs, verbs, "zsh: commands are exactly those of knockctl --help")
        for v in ("events", "deliveries", "hooks", "redeliver-hook", "prune", "backup", "audit"):
            p = subprocess.run([knockctl, v, "--help"], capture_output=True, text=True, env=env)
            want = set(re.findall(r"--[a-z][a-z-]*", p.stdout.splitlines()[0]))
            want -= {"--json"}  # in $common, with the other common options
            block = re.search(r"^\s+%s\)(.*?);;" % re.escape(v), zsh_text, re.M | re.S)
            have = set(re.findall(r"--[a-z][a-z-]*", block.group(1))) if block else set()
            t.ok(want <= have, "zsh: %s offers its options" % v, sorted(want - have))
        if shutil.which("zsh"):
            p = subprocess.run(["zsh", "-n", zsh_file], capture_output=True, text=True)
            t.eq(p.returncode, 0, "zsh -n: the zsh completion parses", p.stderr)
        else:
            t.ok(True, "# SKIP zsh not installed")

        if os.path.exists(BASH_COMPLETION):
            got, err = complete("knockctl -e ", tmp, True)
            t.eq(got, {"shop", "crm-eu"}, "with bash-completion loaded: -e", err)
            got, err = complete("knockctl events --status received,d", tmp, True)
            t.eq(got, {"received,dead"}, "with bash-completion loaded: --status list", err)
            got, err = complete("knockctl ", tmp, True)
            t.eq(got, verbs, "with bash-completion loaded: commands", err)
        else:
            t.ok(True, "# SKIP bash-completion not installed")
    t.done()


if __name__ == "__main__":
    main()
