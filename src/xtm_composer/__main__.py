from xtm_composer.cli import main

main()
