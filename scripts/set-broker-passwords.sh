#!/usr/bin/env sh
# Sets the passwords of the gateway's broker users (imported without any password from
# rabbitmq/definitions.json, so nobody can log in as them until this runs). Passwords come only from
# the environment; a user whose variable is unset or empty keeps no password (login impossible).
#
#   GW_ENQUEUER_PASSWORD  GW_DEQUEUER_PASSWORD  GW_ADMIN_PASSWORD  GW_MONITOR_PASSWORD
#   RABBITMQCTL   rabbitmqctl binary (default: rabbitmqctl)
#   RABBITMQ_NODE target node, e.g. rabbit@broker (default: rabbitmqctl's own default)
#
# Run it where rabbitmqctl can reach the node (same host or container, with its Erlang cookie), e.g.
#   docker compose exec -e GW_ENQUEUER_PASSWORD -e GW_DEQUEUER_PASSWORD rabbitmq sh /scripts/set-broker-passwords.sh
# Note: rabbitmqctl takes the password as an argument, so it is briefly visible in the process list
# of that host; run it on the broker host/container only.
set -eu
ctl="${RABBITMQCTL:-rabbitmqctl}"

set_password() {
  user="$1"
  password="$2"
  if [ -z "$password" ]; then
    echo "set-broker-passwords: $user: no password given, login stays disabled"
    return 0
  fi
  if [ -n "${RABBITMQ_NODE:-}" ]; then
    "$ctl" -n "$RABBITMQ_NODE" change_password "$user" "$password" >/dev/null
  else
    "$ctl" change_password "$user" "$password" >/dev/null
  fi
  echo "set-broker-passwords: $user: password set"
}

set_password gw-enqueuer "${GW_ENQUEUER_PASSWORD:-}"
set_password gw-dequeuer "${GW_DEQUEUER_PASSWORD:-}"
set_password gw-admin "${GW_ADMIN_PASSWORD:-}"
set_password gw-monitor "${GW_MONITOR_PASSWORD:-}"
