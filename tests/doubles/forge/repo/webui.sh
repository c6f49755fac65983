#!/usr/bin/env bash
#################################################
# Forge Fleet lab stand-in for Forge's webui.sh. #
#################################################
# Written from the variable contract of Stable Diffusion WebUI Forge's webui.sh
# (see tests/DOUBLES.md): it sources webui-user.sh, honours install_dir, clone_dir,
# python_cmd, venv_dir ("-" = use python_cmd as is, create no venv), TORCH_COMMAND,
# TORCH_INDEX_URL, REQS_FILE, COMMANDLINE_ARGS and NO_TCMALLOC (each from webui-user.sh or,
# when it leaves them unset, from the environment), refuses to run as root without -f,
# preloads tcmalloc when ldconfig finds it, and runs launch.py with its own arguments in
# Forge's relaunch loop: again while tmp/restart exists (Forge's own restart), and then it
# exits 0 whatever launch.py's exit status was.

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" &>/dev/null && pwd)"

# The settings file beside this script (Forge also reads it from install_dir).
if [[ -f "$SCRIPT_DIR"/webui-user.sh ]]
then
    # shellcheck source=/dev/null
    source "$SCRIPT_DIR"/webui-user.sh
fi

if [[ -z "${install_dir}" ]]
then
    install_dir="$(dirname "$SCRIPT_DIR")"
fi
if [[ -z "${clone_dir}" ]]
then
    clone_dir="$(basename "$SCRIPT_DIR")"
fi
if [[ -z "${python_cmd}" ]]
then
    python_cmd="python3.10"
fi
if [[ -z "${venv_dir}" ]]
then
    venv_dir="venv"
fi
if [[ -z "${LAUNCH_SCRIPT}" ]]
then
    LAUNCH_SCRIPT="launch.py"
fi

can_run_as_root=0
for arg in "$@"
do
    if [[ "$arg" == "-f" ]]
    then
        can_run_as_root=1
    fi
done

delimiter="################################################################"

printf "\n%s\n" "${delimiter}"
printf "Install script for stable-diffusion + Web UI (Forge Fleet lab stand-in)\n"
printf "%s\n" "${delimiter}"

if [[ $(id -u) -eq 0 && can_run_as_root -eq 0 ]]
then
    printf "\n%s\n" "${delimiter}"
    printf "\e[1m\e[31mERROR: This script must not be launched as root, aborting...\e[0m"
    printf "\n%s\n" "${delimiter}"
    exit 1
fi
printf "\nRunning on \e[1m\e[32m%s\e[0m user\n" "$(whoami)"

# Forge clones the project when the checkout is not a git repository; the stand-in refuses
# instead (it cannot reach GitHub), so a broken checkout fails loudly.
if [[ ! -d "${install_dir}/${clone_dir}/.git" ]]
then
    printf "\n%s\n" "${delimiter}"
    printf "\e[1m\e[31mERROR: %s is not a git checkout; Forge would clone another project here\e[0m" "${install_dir}/${clone_dir}"
    printf "\n%s\n" "${delimiter}"
    exit 1
fi

cd "${install_dir}/${clone_dir}/" || { printf "\e[1m\e[31mERROR: Can't cd to %s/%s/, aborting...\e[0m" "${install_dir}" "${clone_dir}"; exit 1; }

if [[ "${venv_dir}" != "-" ]] && [[ -z "${VIRTUAL_ENV}" ]]
then
    printf "\n%s\n" "${delimiter}"
    printf "Create and activate python venv"
    printf "\n%s\n" "${delimiter}"
    if [[ ! -d "${venv_dir}" ]]
    then
        "${python_cmd}" -m venv "${venv_dir}" || exit 1
        first_launch=1
    fi
    # shellcheck source=/dev/null
    if [[ -f "${venv_dir}"/bin/activate ]]
    then
        source "${venv_dir}"/bin/activate
        python_cmd="${venv_dir}/bin/python"
    else
        printf "\e[1m\e[31mERROR: Cannot activate python venv, aborting...\e[0m"
        exit 1
    fi
else
    printf "\n%s\n" "${delimiter}"
    printf "python venv already activate or run without venv: ${VIRTUAL_ENV:-${python_cmd}}"
    printf "\n%s\n" "${delimiter}"
fi

# tcmalloc, as Forge: found with ldconfig, preloaded unless NO_TCMALLOC is set.
if [[ -z "${NO_TCMALLOC}" ]] && [[ -z "${LD_PRELOAD}" ]]
then
    TCMALLOC="$(PATH=/sbin:/usr/sbin:$PATH ldconfig -p 2>/dev/null | grep -P 'libtcmalloc(_minimal|)\.so\.\d' | head -n 1 | awk '{print $NF}')"
    if [[ -n "${TCMALLOC}" ]]
    then
        echo "Using TCMalloc: ${TCMALLOC}"
        export LD_PRELOAD="${TCMALLOC}"
    else
        printf "\e[1m\e[31mCannot locate TCMalloc. Do you have tcmalloc or google-perftool installed on your system? (improves CPU memory usage)\e[0m\n"
    fi
fi

export python_cmd venv_dir TORCH_COMMAND TORCH_INDEX_URL REQS_FILE COMMANDLINE_ARGS

KEEP_GOING=1
export SD_WEBUI_RESTART=tmp/restart
while [[ "$KEEP_GOING" -eq "1" ]]; do
    printf "\n%s\n" "${delimiter}"
    printf "Launching %s..." "${LAUNCH_SCRIPT}"
    printf "\n%s\n" "${delimiter}"
    "${python_cmd}" -u "${LAUNCH_SCRIPT}" "$@"

    if [[ ! -f tmp/restart ]]; then
        KEEP_GOING=0
    fi
done
