# Timed steps for the end-to-end scripts (products.sh, chaos.sh): `step NAME` starts one and
# prints its start time; `timings TITLE` prints how long each took. Source it.

step_names=()
step_starts=()

step() {
  step_names+=("$1")
  step_starts+=("$SECONDS")
  printf '\n== %s (%ss)\n' "$1" "$SECONDS"
}

timings() {
  local i end
  printf '\n== %s\n' "$1"
  for i in "${!step_names[@]}"; do
    end=${step_starts[$((i + 1))]:-$SECONDS}
    printf '%5ss  %s\n' "$((end - step_starts[i]))" "${step_names[$i]}"
  done
  printf '%5ss  total\n' "$SECONDS"
}
