# SPDX-License-Identifier: MIT
# bash completion for knockctl(1): commands, global and per-command options,
# endpoint names (the files in $KNOCK_CONFIG_DIR/endpoints, /etc/knock by
# default; readable by root and the knock group), event statuses and hook
# states (comma lists too), and paths for backup --to and restore.
# tests/integration/test-completion.py checks it against knockctl --help.

_knockctl_endpoints()
{
        local dir=${KNOCK_CONFIG_DIR:-/etc/knock}/endpoints f
        for f in "$dir"/*.conf; do
                [[ -e $f ]] || continue
                f=${f##*/}
                printf '%s\n' "${f%.conf}"
        done
}

# Completes the last element of a comma-separated list of words.
_knockctl_list()
{
        local cur=$1 prefix= words=$2
        if [[ $cur == *,* ]]; then
                prefix=${cur%,*},
                cur=${cur##*,}
        fi
        COMPREPLY=($(compgen -P "$prefix" -W "$words" -- "$cur"))
        return 0
}

_knockctl()
{
        local cur prev words cword
        if declare -F _init_completion >/dev/null; then
                _init_completion || return
        else
                cur=${COMP_WORDS[COMP_CWORD]}
                prev=${COMP_WORDS[COMP_CWORD-1]}
                words=("${COMP_WORDS[@]}")
                cword=$COMP_CWORD
        fi

        local statuses='received processing failed dead ignored handled'
        local hook_states='pending delivered failed'
        local global_opts='-e --endpoint --json -l --wide --full --no-pager -h --help --version'
        local common_opts='--json -l --wide --full --no-pager -h --help'
        local -A verb_opts=(
                [events]='--status --type --since --where --limit'
                [event]=''
                [deliveries]='--invalid --orphan --provider-id --since --header --limit'
                [delivery]='--body'
                [audit]='--action --limit'
                [status]=''
                [endpoints]=''
                [check-config]=''
                [probe]='--at'
                [requeue]='--status --type --since --until --dry-run'
                [replay]='--status --type --since --until --dry-run'
                [replay-delivery]=''
                [ignore]='--status --type --since --until --dry-run'
                [pause]='--route --reason'
                [resume]='--route'
                [hooks]='--state --event --limit'
                [hook]=''
                [redeliver-hook]='--failed --since --until'
                [prune]='--status --older-than --orphans --dry-run'
                [backup]='--to'
                [restore]=''
                [verify]=''
                [migrate]=''
                [copy-to-postgresql]=''
        )

        # The command is the first word that is not an option or -e's value.
        local i verb= w
        for ((i = 1; i < cword; i++)); do
                w=${words[i]}
                case $w in
                -e | --endpoint) ((i++)) ;;
                -*) ;;
                *)
                        verb=$w
                        break
                        ;;
                esac
        done

        case $prev in
        -e | --endpoint)
                COMPREPLY=($(compgen -W "$(_knockctl_endpoints)" -- "$cur"))
                return 0
                ;;
        --status)
                _knockctl_list "$cur" "$statuses"
                return 0
                ;;
        --state)
                COMPREPLY=($(compgen -W "$hook_states" -- "$cur"))
                return 0
                ;;
        --to)
                compopt -o filenames 2>/dev/null
                COMPREPLY=($(compgen -f -- "$cur"))
                return 0
                ;;
        --action)
                COMPREPLY=($(compgen -W "requeue replay replay-delivery ignore prune backup
                        restore migrate redeliver-hook pause resume copy-to-postgresql" -- "$cur"))
                return 0
                ;;
        --type | --since | --until | --limit | --older-than | --event | --provider-id | --at | \
                --route | --reason | --where | --header)
                return 0
                ;;
        esac

        if [[ -z $verb ]]; then
                if [[ $cur == -* ]]; then
                        COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
                else
                        COMPREPLY=($(compgen -W "${!verb_opts[*]}" -- "$cur"))
                fi
                return 0
        fi
        if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "${verb_opts[$verb]} $common_opts" -- "$cur"))
                return 0
        fi
        case $verb in
        restore | probe)
                compopt -o filenames 2>/dev/null
                COMPREPLY=($(compgen -f -- "$cur"))
                ;;
        esac
        return 0
}

complete -F _knockctl knockctl
