#compdef qwenlocal

_qwenlocal_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _QWENLOCAL_COMPLETE=complete_zsh qwenlocal)
}

compdef _qwenlocal_completion qwenlocal
