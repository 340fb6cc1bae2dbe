# Loaded by puma by itself (config/puma.rb). With queue_requests on (puma's
# default), puma reads new connections in its reactor, and a graceful stop
# closes every connection that has not sent its request yet, unanswered: on
# a socket shared by several workers, some requests fail at each reload.
# Off, each accepted connection goes to a thread that reads and answers it,
# and a graceful stop finishes them all.
queue_requests false
