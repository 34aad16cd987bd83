# bash completion for sluice(8): verbs, their subcommands and options,
# configuration files after -c, interfaces after --interface.
# Installed as share/bash-completion/completions/sluice.

_sluice_verbs="proxy check status pools backend l4 registry agent ha reload version help"

_sluice_opts() {
    case "$1" in
    proxy) echo "-c --config -w --workers -p --pid-file -h --help" ;;
    check) echo "-c --config -q --quiet -h --help" ;;
    status | pools | backend | reload) echo "-a --admin -c --config -j --json -h --help" ;;
    registry | agent) echo "-c --config --pid-file -h --help" ;;
    l4) echo "-c --config --pin-dir --force -h --help" ;;
    l4:detach) echo "--pin-dir --remove-maps -h --help" ;;
    l4:list) echo "-c --config --admin --pin-dir -h --help" ;;
    l4:add-service | l4:remove-service | l4:add-real | l4:remove-real) echo "-c --config --admin -h --help" ;;
    l4:decap) echo "--interface --gue-port --detach -h --help" ;;
    registry:*) echo "-c --config --api --token --json --id --weight --datacenter --region --label --disabled
                      --ephemeral --keepalive --enable --disable --settings --once --wait --client --family -h --help" ;;
    ha:config) echo "-c --config -h --help" ;;
    ha:*) echo "-a --admin -c --config -j --json -h --help" ;;
    esac
}

_sluice() {
    local cur prev verb sub i
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    verb=${COMP_WORDS[1]}
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "$_sluice_verbs --help --version" -- "$cur"))
        return
    fi
    case "$prev" in
    -c | --config)
        COMPREPLY=($(compgen -f -X '!*.@(yaml|yml)' -- "$cur") $(compgen -d -- "$cur"))
        return ;;
    -p | --pid-file | --pin-dir)
        COMPREPLY=($(compgen -f -- "$cur"))
        return ;;
    --interface)
        COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur"))
        return ;;
    --family)
        COMPREPLY=($(compgen -W "a aaaa srv" -- "$cur"))
        return ;;
    -a | --admin | --api | --token | -w | --workers | --gue-port | --id | --weight | --datacenter | --region | \
        --label | --settings | --wait | --client)
        return ;;
    esac
    # The subcommand: the first word after the verb that is not an option.
    sub=
    for ((i = 2; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
        -*) ;;
        *) sub=${COMP_WORDS[i]}; break ;;
        esac
    done
    if [ -z "$sub" ] && [[ "$cur" != -* ]]; then
        case "$verb" in
        l4) COMPREPLY=($(compgen -W "detach list add-service remove-service add-real remove-real decap" -- "$cur")); return ;;
        registry) COMPREPLY=($(compgen -W "list show register deregister set watch answer" -- "$cur")); return ;;
        ha) COMPREPLY=($(compgen -W "config status drain undrain preempt" -- "$cur")); return ;;
        help) COMPREPLY=($(compgen -W "$_sluice_verbs" -- "$cur")); return ;;
        esac
    fi
    if [ "$verb" = backend ] && [ "$COMP_CWORD" -ge 4 ] && [[ "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W "weight drain disable enable" -- "$cur"))
        return
    fi
    local key=$verb
    [ -n "$sub" ] && case "$verb" in l4 | registry | ha) key=$verb:$sub ;; esac
    COMPREPLY=($(compgen -W "$(_sluice_opts "$key")" -- "$cur"))
}
complete -F _sluice sluice
