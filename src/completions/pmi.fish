# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_pmi_global_optspecs
    string join \n socket= h/help V/version
end

function __fish_pmi_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_pmi_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_pmi_using_subcommand
    set -l cmd (__fish_pmi_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c pmi -n "__fish_pmi_needs_command" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_needs_command" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_needs_command" -s V -l version -d 'Print version'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "run" -d 'Supervise the apps of a file (the default form), or run one command after `--`'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "check" -d 'Validate an apps file and print the resolved apps; starts nothing'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "convert" -d 'Print an apps file as pmi\'s canonical YAML'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "status" -d 'List the instances (pm2\'s columns)'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "ls" -d 'List the instances (pm2\'s columns)'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "list" -d 'List the instances (pm2\'s columns)'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "describe" -d 'Everything about one app, except environment values'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "start" -d 'Start stopped instances'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "stop" -d 'Stop instances gracefully'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "restart" -d 'Restart instances; returns once the new processes run'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "reload" -d 'Restart instances one at a time, so that some always serve (`reload FILE`: apply)'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "apply" -d 'Make the running apps match the (changed) apps file, or FILE'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "startOrReload" -d 'pm2\'s habit: `startOrReload apps.yaml` is `apply apps.yaml`; an app name is a reload'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "scale" -d 'Set an app\'s instance count: N, +N or -N'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "signal" -d 'Send a signal to instances\' process groups'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "logs" -d 'Show recent output, then optionally follow it'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "health" -d 'Exec probe: exit 0 when healthy'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "version" -d 'Print the version'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "monit" -d 'A live status table, refreshed in place (`docker exec -it ctr pmi monit`)'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "completions" -d 'Print a shell completion script: `pmi completions bash > /etc/bash_completion.d/pmi`'
complete -c pmi -n "__fish_pmi_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pmi -n "__fish_pmi_using_subcommand run" -l http -d 'HTTP address for /livez /readyz /metrics /status (off unless set)' -r
complete -c pmi -n "__fish_pmi_using_subcommand run" -l env -d 'Use the env_NAME blocks of the apps' -r
complete -c pmi -n "__fish_pmi_using_subcommand run" -l only -d 'Start only these apps (comma-separated names or namespaces)' -r
complete -c pmi -n "__fish_pmi_using_subcommand run" -l log-format -d 'How app output is written: raw, prefixed or json' -r
complete -c pmi -n "__fish_pmi_using_subcommand run" -l kill-signal -d 'Default stop signal (apps may set kill_signal)' -r
complete -c pmi -n "__fish_pmi_using_subcommand run" -l kill-timeout -d 'Default time from the stop signal to SIGKILL, in ms' -r
complete -c pmi -n "__fish_pmi_using_subcommand run" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand run" -l no-auto-exit -d 'Keep running when no app runs any more'
complete -c pmi -n "__fish_pmi_using_subcommand run" -s v -l verbose -d 'More of pmi\'s own messages (repeat for more)'
complete -c pmi -n "__fish_pmi_using_subcommand run" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand check" -l env -d 'Use the env_NAME blocks of the apps, as the supervisor\'s --env' -r
complete -c pmi -n "__fish_pmi_using_subcommand check" -l only -d 'Check only these apps (comma-separated names or namespaces)' -r
complete -c pmi -n "__fish_pmi_using_subcommand check" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand check" -l strict -d 'Treat warnings as errors'
complete -c pmi -n "__fish_pmi_using_subcommand check" -l json -d 'Print the resolved apps as JSON (schema in docs/check-json.md)'
complete -c pmi -n "__fish_pmi_using_subcommand check" -l file-only -d 'Judge the file alone: scripts, cwd, interpreters and users are not looked up (CI lint before the build)'
complete -c pmi -n "__fish_pmi_using_subcommand check" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand convert" -l env -d 'Refused with a hint: convert keeps every env_NAME block' -r
complete -c pmi -n "__fish_pmi_using_subcommand convert" -l only -d 'Refused with a hint: convert keeps every app' -r
complete -c pmi -n "__fish_pmi_using_subcommand convert" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand convert" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand status" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand status" -l json -d 'Print JSON instead of the table (schema in docs/status-json.md)'
complete -c pmi -n "__fish_pmi_using_subcommand status" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand ls" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand ls" -l json -d 'Print JSON instead of the table (schema in docs/status-json.md)'
complete -c pmi -n "__fish_pmi_using_subcommand ls" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand list" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand list" -l json -d 'Print JSON instead of the table (schema in docs/status-json.md)'
complete -c pmi -n "__fish_pmi_using_subcommand list" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand describe" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand describe" -l json -d 'Print JSON instead of text'
complete -c pmi -n "__fish_pmi_using_subcommand describe" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand start" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand start" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand stop" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand stop" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand restart" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand restart" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand reload" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand reload" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand apply" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand apply" -l dry-run -d 'List the changes, make none'
complete -c pmi -n "__fish_pmi_using_subcommand apply" -l json -d 'Print the report as JSON (schema in docs/apply.md)'
complete -c pmi -n "__fish_pmi_using_subcommand apply" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand startOrReload" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand startOrReload" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand scale" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand scale" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand signal" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand signal" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand logs" -l lines -d 'How many recent lines to show' -r
complete -c pmi -n "__fish_pmi_using_subcommand logs" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand logs" -s f -l follow -d 'Keep printing new lines as they come'
complete -c pmi -n "__fish_pmi_using_subcommand logs" -l json -d 'One JSON object per line'
complete -c pmi -n "__fish_pmi_using_subcommand logs" -l err -d 'Only stderr lines'
complete -c pmi -n "__fish_pmi_using_subcommand logs" -l out -d 'Only stdout lines'
complete -c pmi -n "__fish_pmi_using_subcommand logs" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand health" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand health" -l ready -d 'Readiness: every autostart app online'
complete -c pmi -n "__fish_pmi_using_subcommand health" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand version" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand version" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand monit" -l interval -d 'Refresh interval in milliseconds (at least 250)' -r
complete -c pmi -n "__fish_pmi_using_subcommand monit" -l count -d 'Stop after this many frames (default: until Ctrl-C)' -r
complete -c pmi -n "__fish_pmi_using_subcommand monit" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand monit" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand completions" -l socket -d 'Control socket path (default /run/pmi/pmi.sock, else /tmp/pmi-<uid>/pmi.sock)' -r -F
complete -c pmi -n "__fish_pmi_using_subcommand completions" -s h -l help -d 'Print help'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "run" -d 'Supervise the apps of a file (the default form), or run one command after `--`'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "check" -d 'Validate an apps file and print the resolved apps; starts nothing'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "convert" -d 'Print an apps file as pmi\'s canonical YAML'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "status" -d 'List the instances (pm2\'s columns)'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "describe" -d 'Everything about one app, except environment values'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "start" -d 'Start stopped instances'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "stop" -d 'Stop instances gracefully'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "restart" -d 'Restart instances; returns once the new processes run'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "reload" -d 'Restart instances one at a time, so that some always serve (`reload FILE`: apply)'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "apply" -d 'Make the running apps match the (changed) apps file, or FILE'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "startOrReload" -d 'pm2\'s habit: `startOrReload apps.yaml` is `apply apps.yaml`; an app name is a reload'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "scale" -d 'Set an app\'s instance count: N, +N or -N'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "signal" -d 'Send a signal to instances\' process groups'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "logs" -d 'Show recent output, then optionally follow it'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "health" -d 'Exec probe: exit 0 when healthy'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "version" -d 'Print the version'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "monit" -d 'A live status table, refreshed in place (`docker exec -it ctr pmi monit`)'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "completions" -d 'Print a shell completion script: `pmi completions bash > /etc/bash_completion.d/pmi`'
complete -c pmi -n "__fish_pmi_using_subcommand help; and not __fish_seen_subcommand_from run check convert status describe start stop restart reload apply startOrReload scale signal logs health version monit completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
