<?php
// op-agent's warm runner for PHP: started before the snapshot is taken, it waits on fd 3 for one
// program to run, so that a request does not pay for the interpreter's start (exec, dynamic
// linking, every extension's start-up).
//
// Protocol with op-agent (fd 3 is a socketpair end), as languages/warm/python.py: the runner
// writes "ready\n" once warm; the agent writes one JSON line {"file", "argv", "cwd", "env"}; the
// runner becomes that program: its $argv, $argc, $_SERVER, $_ENV, environment, cwd and exit
// status are those of `php main.php args...`. A line with "prime": true is run in a forked child
// (this process stays as it was), then "ready\n" again. Nothing here draws random numbers: PHP
// seeds mt_rand and the Random engines on first use, which is after the clone was restored.
//
// The program is included from here, at the top level (its variables are globals, as in
// `php main.php`). The runner leaves no name of its own behind: its helpers are closures in
// variables unset before the include, so a program may define functions of any name. An
// uncaught exception is reported as php reports it, without the include's frame in its trace
// (the handler below takes it out and throws the exception on). What a program can still tell
// apart: debug_backtrace() and get_included_files() show the include, and a program that sets
// its own exception handler gets this one back from set_exception_handler() and sees the frame
// in the traces it prints.

$op_read_request = static function ($ctl): array {
    $line = fgets($ctl);
    if ($line === false) {
        exit(70);
    }
    return json_decode($line, true, 16, JSON_THROW_ON_ERROR);
};

$op_enter = static function (array $req): void {
    chdir($req['cwd']);
    foreach (array_keys(getenv()) as $name) {
        putenv($name);
        unset($_SERVER[$name]);
    }
    foreach ($req['env'] as $name => $value) {
        putenv("$name=$value");
        $_SERVER[$name] = $value;
    }
    // php fills $_ENV only when variables_order has E
    $_ENV = str_contains((string)ini_get('variables_order'), 'E') ? $req['env'] : [];
    $args = array_merge([basename($req['file'])], $req['argv']);
    $GLOBALS['argv'] = $_SERVER['argv'] = $args;
    $GLOBALS['argc'] = $_SERVER['argc'] = count($args);
    foreach (['SCRIPT_FILENAME', 'SCRIPT_NAME', 'PHP_SELF', 'PATH_TRANSLATED'] as $key) {
        $_SERVER[$key] = $args[0];
    }
    $_SERVER['REQUEST_TIME'] = time();
    $_SERVER['REQUEST_TIME_FLOAT'] = microtime(true);
    // an uncaught exception's trace (and its previous ones') ends at the program's {main}, as
    // under `php main.php`: the frame of the include below goes, then php reports it
    set_exception_handler(static function (Throwable $e): void {
        for ($t = $e; $t !== null; $t = $t->getPrevious()) {
            $trace = $t->getTrace();
            $last = count($trace) - 1;
            if ($last >= 0 && ($trace[$last]['file'] ?? null) === __FILE__ &&
                ($trace[$last]['function'] ?? null) === 'include') {
                array_pop($trace);
                $class = $t instanceof Exception ? Exception::class : Error::class;
                (new ReflectionProperty($class, 'trace'))->setValue($t, $trace);
            }
        }
        throw $e;
    });
};

$op_ctl = fopen('php://fd/3', 'r+');
fwrite($op_ctl, "ready\n");
$op_req = $op_read_request($op_ctl);
while (!empty($op_req['prime'])) {
    $op_pid = pcntl_fork();
    if ($op_pid === 0) {
        $op_enter($op_req);
        unset($op_ctl, $op_req, $op_pid, $op_read_request, $op_enter);
        include $argv[0];
        exit(0);
    }
    pcntl_waitpid($op_pid, $op_status);
    fwrite($op_ctl, "ready\n");
    $op_req = $op_read_request($op_ctl);
}
fclose($op_ctl);
$op_enter($op_req);
unset($op_ctl, $op_req, $op_pid, $op_status, $op_read_request, $op_enter);
include $argv[0];
