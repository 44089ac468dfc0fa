# fish completion for reel. Installed as
# $datadir/fish/vendor_completions.d/reel.fish.
#
# As the bash one (reel.bash): nothing about reel is listed here. Commands
# come from `reel --help`, options (and which take a value) from `reel
# COMMAND --help`, session names from `reel ls --json`, config keys from
# `reel config S list --json`, flow ids from `reel flows S --json --limit 200`.
# A --home given on the line is passed on.

function __reel_run --description 'run reel with the --home of the command line'
    if set -q __reel_home[1]; and test -n "$__reel_home"
        command $__reel_bin --home $__reel_home $argv 2>/dev/null
    else
        command $__reel_bin $argv 2>/dev/null
    end
end

function __reel_field --argument-names field
    sed -n 's/^    "'$field'": "\{0,1\}\([^",]*\)"\{0,1\},\{0,1\}$/\1/p'
end

function __reel_complete
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    set -g __reel_bin $tokens[1]
    set -g __reel_home ''
    set -l cmd ''
    set -l i 2
    set -l n (count $tokens)
    # global options, then the command
    while test $i -le $n
        set -l w $tokens[$i]
        switch $w
            case --home
                set i (math $i + 1)
                set __reel_home $tokens[$i]
            case '--home=*'
                set __reel_home (string replace -- --home= '' $w)
            case '-*'
            case '*'
                set cmd $w
                break
        end
        set i (math $i + 1)
    end
    set -l prev $tokens[-1]
    if test -z "$cmd"
        if test "$prev" = --home
            __fish_complete_directories $cur
        else if string match -q -- '-*' $cur
            printf '%s\n' --home --help --version
        else
            __reel_run --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\)  *\(.*\)/\1\t\2/p'
        end
        return
    end
    set -l valued (__reel_run $cmd --help | grep -o -- '--[a-z][a-z-]*[ =][A-Z][A-Z_:=.]*' | sed 's/[ =].*//' | sort -u)
    # positionals so far (skipping options and their values)
    set -l pos
    set i (math $i + 1)
    while test $i -le $n
        set -l w $tokens[$i]
        switch $w
            case --home
                set i (math $i + 1)
                set __reel_home $tokens[$i]
            case '--home=*'
                set __reel_home (string replace -- --home= '' $w)
            case '--*=*'
            case '-*'
                contains -- $w $valued; and set i (math $i + 1)
            case '*'
                set -a pos $w
        end
        set i (math $i + 1)
    end
    if string match -q -- '-*' $prev; and contains -- $prev $valued
        switch $prev
            case --home
                __fish_complete_directories $cur
            case --into
                __reel_run ls --json | __reel_field session
            case --pidfile
                __fish_complete_path $cur
            case --set
                if not string match -q -- '*=*' $cur
                    __reel_run config --help | sed -n '/^options:/,/^$/s/^  \([a-z_][a-z_]*\) .*/\1=/p'
                end
        end
        return
    end
    if string match -q -- '-*' $cur
        __reel_run $cmd --help | grep -o -- '--[a-z][a-z-]*' | sort -u
        return
    end
    set -l np (count $pos)
    switch $cmd
        case resume show verify repair rm flows flow annotate tag untag mark unmark config
            if test $np -eq 0; or test $cmd = rm
                __reel_run ls --json | __reel_field session
            end
        case import
            test $np -eq 0; and __fish_complete_path $cur
            return
    end
    switch $cmd
        case flow annotate tag untag mark unmark
            if test $np -eq 1; or begin; test $np -ge 1; and string match -q -- '*mark' $cmd; end
                __reel_run flows $pos[1] --json --limit 200 | __reel_field id
            end
        case config
            if test $np -eq 1
                printf '%s\n' list get set unset history
            else if test $np -eq 2; and contains -- $pos[2] get set unset
                __reel_run config $pos[1] list --json | __reel_field name
            end
    end
end

complete -c reel -f -a '(__reel_complete)'
