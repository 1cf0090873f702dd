"""Models shared by several phases (the char-level GPT of apoptosis and ewc; the MoE classifier of train-moe and
ewc). Import the submodules directly; nothing is imported here so that config modules stay light."""
