#!/bin/bash
#########################################################
# Uncomment and change the variables below to your need:#
#########################################################

# Install directory without trailing slash
#install_dir="/home/$(whoami)"

# Name of the subdirectory
#clone_dir="stable-diffusion-webui-forge"

# Commandline arguments for webui.py, for example: export COMMANDLINE_ARGS="--listen --port 7860"
#export COMMANDLINE_ARGS=""

# python3 executable
#python_cmd="python3"

# python3 venv without trailing slash (defaults to ${install_dir}/${clone_dir}/venv; "-" = none)
#venv_dir="venv"

# script to launch to start the app
#export LAUNCH_SCRIPT="launch.py"

# install command for torch
#export TORCH_COMMAND="pip install torch==2.3.1 torchvision==0.18.1 --extra-index-url https://download.pytorch.org/whl/cu121"

# Requirements file to use for stable-diffusion-webui
#export REQS_FILE="requirements_versions.txt"

###########################################
