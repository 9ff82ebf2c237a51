%% op-agent's warm runner for the BEAM languages: erlang (`escript main.erl`) and elixir
%% (`elixir main.exs`). Started in each restored clone once the clone's entropy is in the guest
%% kernel ("warm": {"start": "clone"} in languages.json), never before a snapshot: crypto's
%% OpenSSL generator seeds itself in the process that first uses it, and nothing here can seed it
%% again. It loads what a run needs (escript and the compiler; elixir's applications), then waits
%% on fd 3 for one program and becomes it. Compiled to op_warm.beam when the image is built.
%%
%% Started as the cold command starts the VM, followed by `-pa /usr/lib/op/warm -run op_warm
%% start escript|elixir`. Protocol with op-agent (fd 3 is a socketpair end), as
%% languages/warm/python.py: the runner writes "ready\n"; the agent writes one JSON line {"file",
%% "argv", "cwd", "env"}; the runner becomes that program: same argv, cwd, environment, stdin,
%% output, error report and exit status as the cold command. A line with "prime": true is run the
%% same way in a process of its own, its output dropped by the agent and its halt turned into the
%% end of that process; then "ready\n" again.
-module(op_warm).

-export([start/1, get_plain_arguments/0, get_argument/1, halt/1]).

%% Calls the cold command's code makes that the runner answers instead: the program's own
%% command line (escript reads it from init), its HOME (elixir's System.user_home/0 reads the
%% -home flag the VM was started with), and the VM's halt while priming.
-define(ESCRIPT_CALLS, [{escript, [{init, get_plain_arguments, 0}, {erlang, halt, 1}]}]).
-define(ELIXIR_CALLS, [{'Elixir.Kernel.CLI', [{'Elixir.System', halt, 1}]},
                       {'Elixir.System', [{init, get_argument, 1}]}]).
-define(LINE_MAX, 16#1000000).

start([Lang]) ->
    Env0 = os:getenv(),
    code:del_path(filename:dirname(code:which(?MODULE))),
    Patched = setup(Lang),
    Ctl = open_port({fd, 3, 3}, [binary, eof]),
    serve(Lang, Patched, Ctl, Env0).

%% What a run needs, loaded now rather than in the request. true when the cold command's entry
%% module could be made to take the request's command line (else each request runs the cold
%% command).
setup("escript") ->
    _ = code:ensure_modules_loaded(
          [epp, erl_scan, erl_parse, erl_lint, erl_eval, erl_expand_records, erl_internal,
           erl_anno, erl_error, erl_features, compile, io_lib, io_lib_format, io_lib_pretty,
           string, unicode, unicode_util, lists, sets, ordsets, gb_sets, gb_trees, orddict,
           proplists, maps, sofs, digraph, digraph_utils, otp_internal, filename, file]),
    patch_all(?ESCRIPT_CALLS);
setup("elixir") ->
    %% What the elixir command adds with -pa: lib/*/ebin next to its bin/elixir.
    Bin = resolve(os:find_executable("elixir")),
    Lib = filename:join(filename:dirname(filename:dirname(Bin)), "lib"),
    ok = code:add_pathsa(lists:reverse(filelib:wildcard(filename:join([Lib, "*", "ebin"])))),
    %% As elixir:start_cli/0 does before it hands the command line to Kernel.CLI.
    {ok, _} = application:ensure_all_started(elixir),
    _ = case code:ensure_loaded('Elixir.Logger') of
            {module, _} -> application:start(logger);
            {error, _} -> ok
        end,
    _ = code:ensure_modules_loaded(
          ['Elixir.Kernel.CLI', 'Elixir.Code', 'Elixir.Kernel', 'Elixir.Enum', 'Elixir.String',
           'Elixir.IO', 'Elixir.System', 'Elixir.Exception', 'Elixir.List', 'Elixir.Map',
           'Elixir.Integer', 'Elixir.String.Chars', 'Elixir.Inspect', 'Elixir.Inspect.Algebra',
           'Elixir.Kernel.Utils', 'Elixir.Macro', 'Elixir.Module', 'Elixir.Path', 'Elixir.File',
           elixir_compiler, elixir_expand, elixir_erl, elixir_erl_pass, elixir_lexical,
           elixir_tokenizer, elixir_parser, elixir_dispatch, elixir_module, elixir_env]),
    patch_all(?ELIXIR_CALLS).

resolve(Path) ->
    case file:read_link_all(Path) of
        {ok, To} -> resolve(filename:absname(To, filename:dirname(Path)));
        {error, _} -> Path
    end.

serve(Lang, Patched, Ctl, Env0) ->
    true = port_command(Ctl, <<"ready\n">>),
    Req = read_request(Ctl, <<>>),
    case maps:get(<<"prime">>, Req, false) of
        true ->
            prime(Lang, Patched, Req, Env0),
            serve(Lang, Patched, Ctl, Env0);
        _ ->
            port_close(Ctl),
            flush_mailbox(),
            become(Lang, Patched, Req, Env0)
    end.

read_request(Ctl, Acc) ->
    receive
        {Ctl, {data, Data}} ->
            Buf = <<Acc/binary, Data/binary>>,
            case binary:match(Data, <<"\n">>) of
                nomatch when byte_size(Buf) > ?LINE_MAX -> erlang:halt(70);
                nomatch -> read_request(Ctl, Buf);
                _ ->
                    [Line | _] = binary:split(Buf, <<"\n">>),
                    {Obj, _} = json(skip_ws(Line)),
                    Obj
            end;
        {Ctl, eof} ->
            erlang:halt(70) % the agent went away
    end.

flush_mailbox() ->
    receive _ -> flush_mailbox() after 0 -> ok end.

%% The program, in this process (the one -run started, as the cold command's -s/-run process).
become(Lang, Patched, Req, Env0) ->
    {File, Argv} = enter(Req),
    case Patched andalso not fresh(Lang, File, Env0) of
        true -> run(Lang, File, Argv);
        false -> run_cold(Lang, File, Argv)
    end.

run("escript", File, Argv) ->
    persistent_term:put({?MODULE, plain_arguments}, [File | Argv]),
    escript:start();
run("elixir", File, Argv) ->
    'Elixir.Kernel.CLI':main([unicode:characters_to_binary(A) || A <- [File | Argv]]).

%% The cwd, environment and command line of the request. The file is named as the cold command
%% names it, relative to its directory (error reports and escript:script_name() show it).
enter(Req) ->
    Cwd = unicode:characters_to_list(maps:get(<<"cwd">>, Req)),
    ok = file:set_cwd(Cwd),
    set_env(maps:get(<<"env">>, Req)),
    Path = unicode:characters_to_list(maps:get(<<"file">>, Req)),
    File = case filename:dirname(Path) =:= Cwd of
               true -> filename:basename(Path);
               false -> Path
           end,
    {File, [unicode:characters_to_list(A) || A <- maps:get(<<"argv">>, Req)]}.

set_env(Env) ->
    New = [{unicode:characters_to_list(K), unicode:characters_to_list(V)}
           || {K, V} <- maps:to_list(Env)],
    [os:unsetenv(K) || KV <- os:getenv(), [K | _] <- [string:split(KV, "=")],
                       not lists:keymember(K, 1, New)],
    [os:putenv(K, V) || {K, V} <- New],
    ok.

%% Settings the VM reads only as it starts, which the runner was started without: the ERL_* and
%% ELIXIR_* variables (flags, library paths), the locale (the file name encoding), a script's
%% own emulator flags (escript's "%%!" line). Such a program runs as a cold command of its own.
fresh(Lang, File, Env0) ->
    Vars = [K || KV <- os:getenv(), [K | _] <- [string:split(KV, "=")]],
    lists:any(fun(K) -> lists:prefix("ERL_", K) orelse lists:prefix("ELIXIR_", K) end, Vars)
        orelse lists:any(fun(K) -> os:getenv(K) =/= getenv(K, Env0) end,
                         ["LANG", "LC_ALL", "LC_CTYPE"])
        orelse (Lang =:= "escript" andalso emu_args(File)).

getenv(K, Env) ->
    case [V || KV <- Env, [K1, V] <- [string:split(KV, "=")], K1 =:= K] of
        [V | _] -> V;
        [] -> false
    end.

emu_args(File) ->
    case file:open(File, [read, binary]) of
        {ok, Fd} ->
            Lines = [io:get_line(Fd, '') || _ <- [1, 2, 3]],
            ok = file:close(Fd),
            lists:any(fun(<<"%%!", _/binary>>) -> true; (_) -> false end, tl(Lines));
        {error, _} ->
            false
    end.

%% The cold command in a process of its own. Its stdout and stderr are the runner's, opened again
%% through /proc (a port's program gets other ones). Its stdin is what the runner reads from its
%% own, a line at a time (the VM may have read some already), through a FIFO that is gone by
%% the time the command starts.
run_cold(Lang, File, Argv) ->
    Fd = fun(N) -> "/proc/" ++ os:getpid() ++ "/fd/" ++ integer_to_list(N) end,
    Fifo = filename:join(tmp_dir(), "op_warm-" ++ os:getpid() ++ ".stdin"),
    [] = os:cmd("mkfifo -m 600 '" ++ Fifo ++ "' 2>&1"),
    Script = "exec <\"$1\" >>" ++ Fd(1) ++ " 2>>" ++ Fd(2) ++ "; rm -f \"$1\"; shift; "
             "exec \"$0\" \"$@\"",
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", Script, Lang, Fifo, File | Argv]}, nouse_stdio, exit_status]),
    spawn_link(fun() -> feed(Fifo) end),
    receive
        {Port, {exit_status, Status}} -> erlang:halt(Status)
    end.

tmp_dir() ->
    case file:read_file_info("/tmp") of
        {ok, _} -> "/tmp";
        {error, _} -> "."
    end.

feed(Fifo) ->
    {ok, Out} = file:open(Fifo, [write, raw, binary]),
    ok = io:setopts(standard_io, [binary, {encoding, latin1}]),
    feed_lines(Out).

feed_lines(Out) ->
    case io:get_line(standard_io, '') of
        Data when is_binary(Data) ->
            case file:write(Out, Data) of
                ok -> feed_lines(Out);
                {error, _} -> ok % the program closed its stdin
            end;
        _ ->
            file:close(Out)
    end.

%% Run a program of op-agent's the way a user's runs, in a process that is thrown away: the
%% modules it needs are loaded and the emulator has translated their code. The runner's cwd,
%% environment and (elixir) required files and argv are put back.
prime(Lang, Patched, Req, Env0) ->
    {ok, Cwd} = file:get_cwd(),
    Self = self(),
    {Pid, Ref} = spawn_monitor(
                   fun() ->
                           put({?MODULE, prime}, Self),
                           {File, Argv} = enter(Req),
                           case Patched of
                               true -> run(Lang, File, Argv);
                               false -> ok
                           end
                   end),
    receive
        {'DOWN', Ref, process, Pid, _} -> ok;
        {?MODULE, halted, Pid} -> exit(Pid, kill), erlang:demonitor(Ref, [flush])
    end,
    flush_mailbox(),
    case Lang of
        "elixir" ->
            'Elixir.Code':unrequire_files([maps:get(<<"file">>, Req)]),
            'Elixir.System':argv([]);
        "escript" ->
            persistent_term:erase({?MODULE, plain_arguments})
    end,
    ok = file:set_cwd(Cwd),
    set_env(maps:from_list([list_to_tuple(string:split(KV, "=")) || KV <- Env0])),
    wait_output().

%% What the prime wrote has left the VM (a port's queue holds what a pipe did not take yet).
wait_output() ->
    Busy = [P || P <- erlang:ports(), {name, N} <- [erlang:port_info(P, name)],
                 N =:= "0/1" orelse N =:= "2/2",
                 erlang:port_info(P, queue_size) =/= {queue_size, 0}],
    case Busy of
        [] -> ok;
        _ -> receive after 1 -> wait_output() end
    end.

%% escript reads the program's command line here.
get_plain_arguments() ->
    persistent_term:get({?MODULE, plain_arguments}, init:get_plain_arguments()).

%% The -home flag of a VM started with the request's environment.
get_argument(home) ->
    case os:getenv("HOME") of
        false -> init:get_argument(home);
        Home -> {ok, [[Home]]}
    end;
get_argument(Flag) ->
    init:get_argument(Flag).

%% The cold command's halt; while priming, the priming process stops there and is ended.
halt(Status) ->
    case get({?MODULE, prime}) of
        Runner when is_pid(Runner) ->
            Runner ! {?MODULE, halted, self()},
            receive after infinity -> ok end;
        _ ->
            erlang:halt(Status)
    end.

patch_all(Mods) ->
    lists:all(fun({Mod, Calls}) -> patch(Mod, Calls) =:= ok end, Mods).

%% Load Mod again with its calls of the functions in Calls made to this module instead: the
%% import table of its object code names ?MODULE for them. The rest of the code is as shipped.
%% error when the object code is not as expected (the runner then runs the cold command).
patch(Mod, Calls) ->
    try
        Path = code:which(Mod),
        {ok, Mod, Chunks} = beam_lib:all_chunks(Path),
        {_, <<NAtoms:32/signed, Names/binary>>} = lists:keyfind("AtU8", 1, Chunks),
        true = NAtoms > 0, % OTP 26 marks its longer atom names with a negative count
        Atoms = atoms(NAtoms, Names),
        Index = maps:from_list(lists:zip(Atoms, lists:seq(1, NAtoms))),
        Self = atom_to_binary(?MODULE),
        {SelfIndex, Atoms2} = case maps:find(Self, Index) of
                                  {ok, I} -> {I, Atoms};
                                  error -> {NAtoms + 1, Atoms ++ [Self]}
                              end,
        Want = [{maps:get(atom_to_binary(M), Index), maps:get(atom_to_binary(F), Index), A}
                || {M, F, A} <- Calls],
        {_, <<NImports:32, Imports/binary>>} = lists:keyfind("ImpT", 1, Chunks),
        Found = [x || <<M:32, F:32, A:32>> <= Imports, lists:member({M, F, A}, Want)],
        true = length(Found) =:= length(Want),
        Imports2 = << <<(case lists:member({M, F, A}, Want) of
                             true -> SelfIndex;
                             false -> M
                         end):32, F:32, A:32>>
                      || <<M:32, F:32, A:32>> <= Imports >>,
        AtU8 = iolist_to_binary([<<(length(Atoms2)):32>>
                                 | [[byte_size(B), B] || B <- Atoms2]]),
        Chunks2 = lists:keyreplace("ImpT", 1,
                                   lists:keyreplace("AtU8", 1, Chunks, {"AtU8", AtU8}),
                                   {"ImpT", <<NImports:32, Imports2/binary>>}),
        {ok, Beam} = beam_lib:build_module(Chunks2),
        _ = code:unstick_mod(Mod),
        {module, Mod} = code:load_binary(Mod, Path, Beam),
        _ = code:stick_mod(Mod),
        ok
    catch
        _:_ -> error
    end.

atoms(0, _) -> [];
atoms(N, <<Len, Name:Len/binary, Rest/binary>>) -> [Name | atoms(N - 1, Rest)].

%% The request line: JSON as op-agent writes it (jansson, compact).
skip_ws(<<C, R/binary>>) when C =:= $\s; C =:= $\t; C =:= $\n; C =:= $\r -> skip_ws(R);
skip_ws(B) -> B.

json(<<"{", R/binary>>) -> object(skip_ws(R), #{});
json(<<"[", R/binary>>) -> array(skip_ws(R), []);
json(<<"\"", R/binary>>) -> string(R, []);
json(<<"true", R/binary>>) -> {true, R};
json(<<"false", R/binary>>) -> {false, R};
json(<<"null", R/binary>>) -> {null, R};
json(B) -> number(B, []).

object(<<"}", R/binary>>, M) when map_size(M) =:= 0 -> {M, R};
object(<<"\"", R/binary>>, M) ->
    {K, R1} = string(R, []),
    <<":", R2/binary>> = skip_ws(R1),
    {V, R3} = json(skip_ws(R2)),
    case skip_ws(R3) of
        <<",", R4/binary>> -> object(skip_ws(R4), M#{K => V});
        <<"}", R4/binary>> -> {M#{K => V}, R4}
    end.

array(<<"]", R/binary>>, []) -> {[], R};
array(B, Acc) ->
    {V, R1} = json(B),
    case skip_ws(R1) of
        <<",", R2/binary>> -> array(skip_ws(R2), [V | Acc]);
        <<"]", R2/binary>> -> {lists:reverse([V | Acc]), R2}
    end.

string(<<"\"", R/binary>>, Acc) ->
    {iolist_to_binary(lists:reverse(Acc)), R};
string(<<"\\u", H:4/binary, R/binary>>, Acc) ->
    case binary_to_integer(H, 16) of
        Hi when Hi >= 16#D800, Hi < 16#DC00 ->
            <<"\\u", L:4/binary, R2/binary>> = R,
            C = 16#10000 + ((Hi - 16#D800) bsl 10) + (binary_to_integer(L, 16) - 16#DC00),
            string(R2, [<<C/utf8>> | Acc]);
        C ->
            string(R, [<<C/utf8>> | Acc])
    end;
string(<<"\\", E, R/binary>>, Acc) ->
    string(R, [escape(E) | Acc]);
string(<<C, R/binary>>, Acc) ->
    string(R, [C | Acc]).

escape($n) -> $\n;
escape($t) -> $\t;
escape($r) -> $\r;
escape($b) -> $\b;
escape($f) -> $\f;
escape(C) when C =:= $"; C =:= $\\; C =:= $/ -> C.

number(<<C, R/binary>>, Acc) when C >= $0, C =< $9; C =:= $-; C =:= $+; C =:= $.; C =:= $e;
                                  C =:= $E ->
    number(R, [C | Acc]);
number(R, Acc) ->
    {list_to_binary(lists:reverse(Acc)), R}.
