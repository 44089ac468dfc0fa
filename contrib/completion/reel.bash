# bash completion for reel. Installed as
# $datadir/bash-completion/completions/reel (loaded on demand).
#
# Nothing about reel is listed here: commands come from `reel --help`, each
# command's options (and which take a value) from `reel COMMAND --help`,
# session names from `reel ls --json`, config keys from `reel config S list
# --json` and flow ids from `reel flows S --json --limit 200`, so completion
# follows the installed binary. A --home given on the line is passed on.

# Values of "FIELD" in the objects of a JSON array as reel prints it
# (indented by 2: each field on its own line, 4 spaces in).
_reel_field() {
    sed -n 's/^    "'"$1"'": "\{0,1\}\([^",]*\)"\{0,1\},\{0,1\}$/\1/p'
}

_reel_run() {
    "${_reel_cmd:-reel}" ${_reel_home:+--home "$_reel_home"} "$@" 2>/dev/null
}

_reel_commands() {
    _reel_run --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p'
}

# Options of command $1 (every --name in its help).
_reel_options() {
    _reel_run "$1" --help | grep -o -- '--[a-z][a-z-]*' | sort -u
}

# Options of command $1 that take a value: "--name ARG" or "--name=ARG" in
# its help, ARG in capitals.
_reel_valued() {
    _reel_run "$1" --help | grep -o -- '--[a-z][a-z-]*[ =][A-Z][A-Z_:=.]*' |
        sed 's/[ =].*//' | sort -u
}

_reel() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local _reel_cmd=${COMP_WORDS[0]} _reel_home="" cmd="" valued=""
    local -a pos=()
    local i=1 w
    COMPREPLY=()
    # global options, then the command
    while [ $i -lt $COMP_CWORD ]; do
        w=${COMP_WORDS[i]}
        case "$w" in
            --home) i=$((i + 1)); _reel_home=${COMP_WORDS[i]} ;;
            --home=*) _reel_home=${w#--home=} ;;
            -*) ;;
            *) cmd=$w; break ;;
        esac
        i=$((i + 1))
    done
    _reel_home=${_reel_home/#\~/$HOME}
    if [ -z "$cmd" ]; then
        case "$prev" in
            --home) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        esac
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--home --help --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$(_reel_commands)" -- "$cur"))
        fi
        return
    fi
    valued=" $(_reel_valued "$cmd" | tr '\n' ' ') "
    # positionals so far (skipping options and their values)
    i=$((i + 1))
    while [ $i -lt $COMP_CWORD ]; do
        w=${COMP_WORDS[i]}
        case "$w" in
            --home) i=$((i + 1)); _reel_home=${COMP_WORDS[i]/#\~/$HOME} ;;
            --home=*) _reel_home=${w#--home=} ;;
            --*=*) ;;
            -*) [[ $valued == *" $w "* ]] && i=$((i + 1)) ;;
            *) pos+=("$w") ;;
        esac
        i=$((i + 1))
    done
    if [[ $prev == -* && $valued == *" $prev "* ]]; then
        case "$prev" in
            --home) COMPREPLY=($(compgen -d -- "$cur")) ;;
            --into) COMPREPLY=($(compgen -W "$(_reel_run ls --json | _reel_field session)" -- "$cur")) ;;
            --pidfile) COMPREPLY=($(compgen -f -- "$cur")) ;;
            --set)
                if [[ $cur != *=* ]]; then
                    local keys
                    keys=$(_reel_run config --help | sed -n '/^options:/,/^$/s/^  \([a-z_][a-z_]*\) .*/\1=/p')
                    COMPREPLY=($(compgen -W "$keys" -- "$cur"))
                    compopt -o nospace 2>/dev/null
                fi ;;
        esac
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_reel_options "$cmd")" -- "$cur"))
        return
    fi
    local n=${#pos[@]} s=${pos[0]} words=""
    case "$cmd" in
        resume|show|verify|repair|rm|flows|flow|annotate|tag|untag|mark|unmark|config)
            if [ "$n" = 0 ] || [ "$cmd" = rm ]; then
                words=$(_reel_run ls --json | _reel_field session)
            fi ;;
        import)
            [ "$n" = 0 ] && COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
    esac
    case "$cmd" in
        flow|annotate|tag|untag|mark|unmark)
            if [ "$n" = 1 ] || { [ "$n" -ge 1 ] && [[ $cmd == *mark ]]; }; then
                words=$(_reel_run flows "$s" --json --limit 200 | _reel_field id)
            fi ;;
        config)
            if [ "$n" = 1 ]; then
                words="list get set unset history"
            elif [ "$n" = 2 ] && [[ ${pos[1]} =~ ^(get|set|unset)$ ]]; then
                words=$(_reel_run config "$s" list --json | _reel_field name)
            fi ;;
    esac
    [ -n "$words" ] && COMPREPLY=($(compgen -W "$words" -- "$cur"))
    return 0
}
complete -F _reel reel
