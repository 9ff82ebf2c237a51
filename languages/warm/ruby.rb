# op-agent's warm runner for Ruby: started before the snapshot is taken, it loads the standard
# libraries programs commonly use and then waits on fd 3 for one program to run.
#
# Protocol with op-agent (fd 3 is a socketpair end), as languages/warm/python.py: the runner
# writes "ready\n" once warm; the agent writes one JSON line {"file", "argv", "cwd", "env"}; the
# runner becomes that program: same ARGV, $0, cwd, environment, exit status and error report as
# `ruby file args...`. A line with "prime": true is run in a forked child with its output
# discarded (the runner's own state stays as it was), then "ready\n" again.
require "json"
require "set"
require "time"
require "date"
require "bigdecimal"
require "stringio"
require "digest"
require "pp"
require "ostruct"
require "securerandom"

RUNNER = File.expand_path(__FILE__)

def read_request(ctl)
  line = ctl.gets
  exit!(70) unless line
  JSON.parse(line)
end

def enter(req)
  Dir.chdir(req["cwd"])
  ENV.replace(req["env"])
  ARGV.replace(req["argv"])
  $0 = req["file"]
end

# Run the program at top level; its errors are reported as ruby reports them, without this
# runner's frames.
def run(req)
  load(req["file"])
rescue SystemExit
  raise
rescue Exception => e # rubocop:disable Lint/RescueException
  e.set_backtrace(e.backtrace.reject { |l| l.start_with?(RUNNER) }) if e.backtrace
  raise
end

# The program runs once through the same path as a user's, in a child: this warms the
# emulator's translation cache (shared code pages), not Ruby's state.
def prime(req)
  pid = fork do
    $stdout.reopen(File::NULL, "w")
    $stderr.reopen(File::NULL, "w")
    enter(req)
    begin
      run(req)
    rescue Exception # rubocop:disable Lint/RescueException
      nil
    end
    $stdout.flush
    exit!(0)
  end
  Process.wait(pid)
end

ctl = IO.for_fd(3, "r+b", autoclose: false)
ctl.sync = true
ctl.write("ready\n")
req = read_request(ctl)
while req["prime"]
  prime(req)
  ctl.write("ready\n")
  req = read_request(ctl)
end
ctl.close
enter(req)
# State every clone shares from the snapshot is made its own before user code runs.
srand
run(req)
