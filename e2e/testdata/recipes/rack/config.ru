# A Rack app for the puma recipe: it answers "pid P ppid Q".
run lambda { |_env|
  [200, { "Content-Type" => "text/plain" }, ["pid #{Process.pid} ppid #{Process.ppid}\n"]]
}
