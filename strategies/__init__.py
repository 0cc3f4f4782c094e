"""Pure quoting code: market analysis, the four spec strategies, selection, simulation, backtesting.

No module here (except ``apps.py`` and ``management/``) imports Django or ccxt.
"""
