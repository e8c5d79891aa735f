#!/usr/bin/env bash
# The narration both demos share (hack/demo.sh, hack/demo-kruise.sh): bold
# steps, plain lines, and kubectl commands shown as a person would type
# them before they run. Sourced after e2e/cluster/lib.sh (kubectl_ns).

if [ -t 1 ]; then
	B=$'\e[1m' C=$'\e[36m' G=$'\e[32m' Y=$'\e[33m' N=$'\e[0m'
else
	B='' C='' G='' Y='' N=''
fi

step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
say() { printf '%s\n' "$*"; }
# quote prints its arguments as a person would type them in a shell.
quote() {
	local a out=
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./=:,@%+-]+$ ]]; then out+=" $a"
		elif [[ $a != *\'* ]]; then out+=" '$a'"
		else out+=" $(printf '%q' "$a")"; fi
	done
	printf '%s' "${out# }"
}

# k shows a kubectl command as a user would type it, then runs it.
k() {
	printf '%s$ kubectl %s%s\n' "$C" "$(quote "$@")" "$N"
	kubectl_ns "$@"
}
