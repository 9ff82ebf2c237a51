# op-agent's warm runner for Ruby: started before the snapshot is taken, it loads the standard
# libraries programs commonly use and then waits on fd 3 for one program to run.
#
# Protocol with op-agent (fd 3 is a socketpair end), as languages/warm/python.py: the runner
# writes "ready\n" once warm; the agent writes one JSON line {"file", "argv", "cwd", "env"}; the
# runner becomes that program: same ARGV, $0, __FILE__, DATA, cwd, environment, exit status and
# error report as `ruby main.rb args...` (the libraries below are loaded already: a program
# that uses JSON without requiring it runs here and not under ruby). A line with "prime": true
# is run in a forked child with its output discarded (the runner's own state stays as it was),
# then "ready\n" again. The runner's own names live in a module that is gone before the program
# runs.
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

module OpWarmRuby
  RUNNER = File.expand_path(__FILE__)

  module_function

  def read_request(ctl)
    line = ctl.gets
    exit!(70) unless line
    JSON.parse(line)
  end

  # ruby main.rb runs in the program's directory: $0 and __FILE__ are the name as given.
  def enter(req)
    Dir.chdir(req["cwd"])
    ENV.replace(req["env"])
    ARGV.replace(req["argv"])
    $0 = File.basename(req["file"])
  end

  # DATA, as ruby defines it for the script it runs: the script read from the line after
  # __END__, in the script's source encoding (a magic comment's, else UTF-8).
  def define_data(name)
    src = File.binread(name)
    m = /^__END__(?:\r?\n|\z)/n.match(src)
    return unless m

    coding = src[/\A(?:#!.*\n)?#.*coding[:=][ \t]*([\w.-]+)/n, 1]
    encoding = (Encoding.find(coding) rescue nil) if coding
    data = File.open(name, "r")
    data.set_encoding(encoding || Encoding::UTF_8)
    data.seek(m.end(0))
    Object.const_set(:DATA, data)
  end

  # Run the program as ruby runs its script: compiled as the main program (frames named
  # <main>), under the name the cold command gives it; its errors are reported as ruby reports
  # them, without this runner's frames.
  def run(req)
    name = File.basename(req["file"])
    define_data(name)
    begin
      main = RubyVM::InstructionSequence.compile_file(name)
    rescue SyntaxError => e
      $stderr.puts(e.message) # as ruby reports a script it cannot parse: exit 1
      exit(1)
    end
    main.eval
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

  def main
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
    Object.send(:remove_const, :OpWarmRuby)
    run(req)
  end
end

OpWarmRuby.main
